from cttv2_client.cli import main

main()
