from hartonomous.cli.main import run

run()
