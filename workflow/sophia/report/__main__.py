from sophia.cli import main as cli_main
from sophia.report.stage import main

cli_main(main)
