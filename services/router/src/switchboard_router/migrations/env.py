from switchboard_common.db.migrations import run_env
from switchboard_router.models import Base

run_env(Base.metadata)
