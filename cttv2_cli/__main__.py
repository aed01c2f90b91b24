from cttv2_cli.main import main

main()
