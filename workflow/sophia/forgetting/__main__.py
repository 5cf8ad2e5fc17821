from sophia.cli import main as cli_main
from sophia.forgetting.stage import main

cli_main(main)
