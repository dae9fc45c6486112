from edgepoc.cli.main import main

main()
