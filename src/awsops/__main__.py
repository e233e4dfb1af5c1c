from awsops.cli.main import main

main()
