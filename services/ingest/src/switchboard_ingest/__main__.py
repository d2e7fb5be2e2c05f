from switchboard_common.cli import service_main
from switchboard_ingest.settings import IngestSettings

main = service_main(
    "ingest",
    "switchboard_ingest",
    "ingest",
    "switchboard_ingest.app:create_app",
    8001,
    settings_class=IngestSettings,
)

if __name__ == "__main__":
    main(None)
