from driftline.cli import run

run()
