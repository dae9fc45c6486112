from edgepoc.cli import run

run()
