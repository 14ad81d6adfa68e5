//! An agent's name can never stand for another agent: a name that is another agent's id is
//! refused at join, and a key is looked up as an id first.

use super::TestServer;
use crate::error::ServerError;

async fn join(srv: &TestServer, name: &str) -> Result<String, ServerError> {
    srv.join(name).await.map(|(id, _)| id)
}

#[tokio::test]
async fn a_name_that_is_another_agents_id_is_refused() {
    let srv = TestServer::new().await;
    let db = join(&srv, "db-1").await.unwrap();
    let Err(ServerError::BadRequest(why)) = join(&srv, &db).await else {
        panic!("an agent was named after another agent's id");
    };
    assert!(why.contains("another agent's id"), "{why}");
    // The id names the database machine, whatever else joined.
    let found = srv.parts.app.fleet().agent(&db).await.unwrap();
    assert_eq!(found.name, "db-1");
}
