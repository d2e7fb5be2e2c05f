from switchboard_common.db.migrations import run_env
from switchboard_metrics.models import Base

run_env(Base.metadata)
