//! Statements over both protocols: the simple one (psql: text, perhaps
//! several statements at once) and the extended one (drivers, `pgbench -M
//! extended`: Parse once with `$n` placeholders, then Bind values,
//! Describe, Execute).
//!
//! A statement is routed ([`super::route`]) and, for the lake, planned at
//! Parse, so Describe answers its parameter and column types without
//! running it, and a syntax error or a refused write is reported at Parse
//! as Postgres does. Access is checked at Parse and again at Execute, since
//! a prepared statement outlives nothing but its connection, and a caller
//! never learns the columns of a namespace it may not read.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tributary_core::config::Access;
use tributary_query::{Checked, QueryEngine, QueryResult};
use tributary_table::Lake;

use super::route::{Command, Route, route, split};
use super::{catalog, decode, encode, error};
use crate::auth::Caller;

/// What statements are answered from.
#[derive(Debug, Clone)]
pub struct Lakeside {
    /// The SQL engine.
    pub query: QueryEngine,
    /// The lake, for the catalog's table list.
    pub lake: Lake,
}

/// A parsed statement: its route, and for Describe its parameter types
/// and result columns.
#[derive(Debug, Clone)]
pub struct Parsed {
    sql: String,
    route: Route,
    /// A lake query as checked at Parse, so that each Execute does not
    /// parse it again.
    checked: Option<Checked>,
    params: Vec<Type>,
    columns: SchemaRef,
}

/// Both query protocols.
#[derive(Debug, Clone)]
pub struct Handler {
    lake: Arc<Lakeside>,
    parser: Arc<Parser>,
}

/// Parses (and plans) statements for the extended protocol.
#[derive(Debug)]
pub struct Parser {
    lake: Arc<Lakeside>,
}

impl Handler {
    /// A handler answering from `lake`.
    pub fn new(lake: Lakeside) -> Self {
        let lake = Arc::new(lake);
        Self { parser: Arc::new(Parser { lake: lake.clone() }), lake }
    }
}

/// The caller the startup handler admitted.
fn caller<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Caller>> {
    client
        .session_extensions()
        .get::<Caller>()
        .ok_or_else(|| error::fatal("28000", "the connection is not authenticated"))
}

/// Runs one routed statement (a lake query `checked` already, if at
/// Parse) and answers it as Postgres would.
async fn run(
    lake: &Lakeside,
    caller: &Caller,
    sql: &str,
    route: &Route,
    checked: Option<&Checked>,
    values: &[Option<String>],
    format: Option<&Format>,
) -> PgWireResult<Response> {
    let result = match route {
        Route::Empty => return Ok(Response::EmptyQuery),
        Route::Command(Command::Other(tag)) => return Ok(Response::Execution(Tag::new(tag))),
        Route::Command(Command::Begin) => return Ok(Response::TransactionStart(Tag::new("BEGIN"))),
        Route::Command(Command::End(tag)) => return Ok(Response::TransactionEnd(Tag::new(tag))),
        Route::Fixed(result) => result.clone(),
        Route::Catalog(query) => catalog::answer(query, &lake.lake, caller).await?,
        Route::Lake => {
            let checked = match checked {
                Some(c) => c.clone(),
                None => tributary_query::check(sql).map_err(error::query)?,
            };
            caller.require_all(&checked.namespaces, Access::Read).map_err(error::denied)?;
            lake.query.run(checked, values).await.map_err(error::query)?
        }
    };
    let tag = if sql.trim_start().get(..4).is_some_and(|w| w.eq_ignore_ascii_case("show")) { "SHOW" } else { "SELECT" };
    rows(result, format, tag)
}

/// `result` as a row description and data rows in `format`.
fn rows(result: QueryResult, format: Option<&Format>, tag: &str) -> PgWireResult<Response> {
    let fields = Arc::new(encode::fields(result.schema.fields(), format));
    let data = encode::rows(&result.batches, &fields).map_err(|e| error::error("XX000", e.to_string()))?;
    let mut response = QueryResponse::new(fields, futures::stream::iter(data.into_iter().map(Ok)));
    response.set_command_tag(tag);
    Ok(Response::Query(response))
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let caller = caller(client)?;
        let mut responses = Vec::new();
        // Statements run in order; the first error ends the query, and the
        // ones after it are not run, as in Postgres.
        for sql in split(query) {
            match run(&self.lake, &caller, sql, &route(sql), None, &[], None).await {
                Ok(response) => responses.push(response),
                Err(e) => {
                    responses.push(Response::Error(Box::new(ErrorInfo::from(e))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Parsed;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Parsed>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let caller = caller(client)?;
        let route = route(sql);
        let (params, columns, checked) = match &route {
            Route::Empty | Route::Command(_) => (Vec::new(), Arc::new(Schema::empty()), None),
            Route::Fixed(result) => (Vec::new(), result.schema.clone(), None),
            Route::Catalog(query) => {
                let answer = catalog::answer(query, &self.lake.lake, &caller).await?;
                (Vec::new(), answer.schema, None)
            }
            Route::Lake => {
                let checked = tributary_query::check(sql).map_err(error::query)?;
                caller.require_all(&checked.namespaces, Access::Read).map_err(error::denied)?;
                let prepared = self.lake.query.prepare(checked.clone()).await.map_err(error::query)?;
                let params = prepared.params.iter().map(|t| t.as_ref().map_or(Type::TEXT, encode::pg_type)).collect();
                (params, prepared.schema, Some(checked))
            }
        };
        Ok(Parsed { sql: sql.to_owned(), route, checked, params, columns })
    }

    fn get_parameter_types(&self, stmt: &Parsed) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(&self, stmt: &Parsed, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(encode::fields(stmt.columns.fields(), format))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Parsed;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Parsed>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let caller = caller(client)?;
        let stored = &portal.statement;
        let parsed = &stored.statement;
        let values = (0..portal.parameter_len())
            .map(|i| {
                // The type the client declared at Parse, else the one planning inferred.
                let ty = stored.parameter_types.get(i).cloned().flatten();
                let ty = ty.or_else(|| parsed.params.get(i).cloned()).unwrap_or(Type::TEXT);
                let binary = portal.parameter_format.is_binary(i);
                decode::parameter(i + 1, portal.parameters[i].as_deref(), &ty, binary)
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        let format = Some(&portal.result_column_format);
        run(&self.lake, &caller, &parsed.sql, &parsed.route, parsed.checked.as_ref(), &values, format).await
    }
}
