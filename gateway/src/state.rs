//! What every request handler shares.

use std::sync::Arc;

use crate::agencies::AgencyRegistry;
use crate::audit::AuditLog;
use crate::auth::Callers;
use crate::config::GatewayConfig;
use crate::dispatch::DispatcherHandle;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<GatewayConfig>,
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub agencies: Arc<AgencyRegistry>,
    pub callers: Callers,
    pub dispatcher: DispatcherHandle,
}
