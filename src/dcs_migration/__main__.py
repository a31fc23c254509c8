from dcs_migration.cli import main

main()
