from alq.cli import main

main()
