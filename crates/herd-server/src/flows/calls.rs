//! `http` and `notify` steps through `herd-actions` (breakers, rate limits and retries are
//! its own, shared by every step of the server).

use herd_core::actions::{HttpCall, Notify};

use super::exec::{ActionAnswer, ServerActions};

/// The server's one `Actions` (a clone shares its breakers and buckets).
pub struct Calls(pub herd_actions::Actions);

fn answer(r: herd_actions::ActionResult) -> ActionAnswer {
    ActionAnswer {
        ok: r.ok,
        outputs: r.outputs,
        output: r.output,
        error: r.error,
    }
}

#[async_trait::async_trait]
impl ServerActions for Calls {
    async fn http(&self, call: &HttpCall) -> ActionAnswer {
        answer(self.0.http(call).await)
    }

    async fn notify(&self, note: &Notify) -> ActionAnswer {
        answer(self.0.notify(note).await)
    }
}
