from sophia.base_model.stage import main
from sophia.cli import main as cli_main

cli_main(main)
