from switchboard_common.cli import service_main
from switchboard_conversation.settings import ConversationSettings

main = service_main(
    "conversation",
    "switchboard_conversation",
    "conversation",
    "switchboard_conversation.app:create_app",
    8002,
    settings_class=ConversationSettings,
)

if __name__ == "__main__":
    main(None)
