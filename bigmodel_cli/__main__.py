from bigmodel_cli.cli import run

run()
