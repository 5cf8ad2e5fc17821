from sophia.cli import main as cli_main
from sophia.data.stage import main

cli_main(main)
