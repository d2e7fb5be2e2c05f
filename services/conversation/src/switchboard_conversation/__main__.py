from switchboard_common.cli import service_main

main = service_main(
    "conversation",
    "switchboard_conversation",
    "conversation",
    "switchboard_conversation.app:create_app",
    8002,
)

if __name__ == "__main__":
    main(None)
