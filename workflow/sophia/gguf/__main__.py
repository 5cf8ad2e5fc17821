from sophia.cli import main as cli_main
from sophia.gguf.stage import main

cli_main(main)
