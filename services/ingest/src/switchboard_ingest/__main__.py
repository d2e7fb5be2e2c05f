from switchboard_common.cli import service_main

main = service_main("ingest", "switchboard_ingest", "ingest", "switchboard_ingest.app:create_app", 8001)

if __name__ == "__main__":
    main(None)
