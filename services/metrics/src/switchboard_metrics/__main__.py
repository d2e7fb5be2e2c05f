from switchboard_common.cli import service_main
from switchboard_metrics.settings import MetricsSettings

main = service_main(
    "metrics",
    "switchboard_metrics",
    "metrics",
    "switchboard_metrics.app:create_app",
    8004,
    settings_class=MetricsSettings,
)

if __name__ == "__main__":
    main(None)
