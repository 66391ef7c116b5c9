from stacgit.cli import main

main()
