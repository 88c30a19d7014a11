"""The broker resource: Dhan's credentials for live execution, set with ``dg.EnvVar`` only when the
variable exists where the definitions load (:func:`~options_v4_dagster.defs.resources.env_secret`):
the UI shows the variable's name, never its value, and neither run config nor logs hold them."""

import dagster as dg

from options_v4_dagster.defs.resources import _secret, env_secret
from options_v4_dagster.trading.service import DhanCredentials


class BrokerResource(dg.ConfigurableResource):
    """Credentials of the live broker (Dhan). The paper broker needs none. Whether an execution may go
    live is decided by :func:`~options_v4_dagster.trading.service.check_live` (credentials,
    ``OPTIONS_V4_LIVE=1``, ``live: true`` in the run config)."""

    dhan_client_id: str | None = _secret("DHAN_CLIENT_ID")
    dhan_access_token: str | None = _secret("DHAN_ACCESS_TOKEN")
    dhan_api_base_url: str = ""  # "" = DHAN_API_BASE_URL, else Dhan's

    def credentials(self) -> DhanCredentials | None:
        if not (self.dhan_client_id or self.dhan_access_token):
            return None
        return DhanCredentials(self.dhan_client_id or "", self.dhan_access_token or "",
                               self.dhan_api_base_url or None)


@dg.definitions
def broker_resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "broker": BrokerResource(dhan_client_id=env_secret("DHAN_CLIENT_ID"),
                                 dhan_access_token=env_secret("DHAN_ACCESS_TOKEN")),
    })
