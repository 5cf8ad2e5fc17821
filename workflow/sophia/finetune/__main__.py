from sophia.cli import main as cli_main
from sophia.finetune.stage import main

cli_main(main)
