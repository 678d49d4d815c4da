from ethdash.cli import main

main()
