from switchboard_common.cli import service_main
from switchboard_router.settings import RouterSettings

main = service_main(
    "router",
    "switchboard_router",
    "router",
    "switchboard_router.app:create_app",
    8003,
    settings_class=RouterSettings,
)

if __name__ == "__main__":
    main(None)
