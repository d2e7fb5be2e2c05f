from switchboard_common.cli import service_main

main = service_main("router", "switchboard_router", "router", "switchboard_router.app:create_app", 8003)

if __name__ == "__main__":
    main(None)
