from switchboard_common.cli import service_main

main = service_main("metrics", "switchboard_metrics", "metrics", "switchboard_metrics.app:create_app", 8004)

if __name__ == "__main__":
    main(None)
