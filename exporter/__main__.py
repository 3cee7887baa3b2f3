from .cli import main

main(prog_name="exporter")  # `python -m exporter --help` reads as the command users type
