//! A router that remembers what it serves. Every resource adds its routes through [`Routes`],
//! which lists each (method, path) as the OpenAPI description names it, so the list the
//! description is checked against is the router itself, read at run time.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use super::AppState;

/// One route as the description names it: method and path template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: Method,
    pub path: String,
}

/// Routes being built, and the list of them.
pub struct Routes {
    router: Router<AppState>,
    listed: Vec<Route>,
}

impl Routes {
    pub fn new() -> Self {
        Routes {
            router: Router::new(),
            listed: Vec::new(),
        }
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::GET, path, "", handler)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::POST, path, "", handler)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PUT, path, "", handler)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::DELETE, path, "", handler)
    }

    /// `GET path` served at `path` + `suffix` (an RFC 8615 well-known URI takes the issuer's
    /// path after it), listed as `path`.
    pub fn get_with_suffix<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &str,
        suffix: &str,
        handler: H,
    ) -> Self {
        self.add(Method::GET, path, suffix, handler)
    }

    fn add<H: Handler<T, AppState>, T: 'static>(
        mut self,
        method: Method,
        path: &str,
        suffix: &str,
        handler: H,
    ) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes by");
        // A path given twice merges its methods (axum refuses only a method given twice).
        self.router = self
            .router
            .route(&format!("{path}{suffix}"), on(filter, handler));
        self.listed.push(Route {
            method,
            path: path.to_owned(),
        });
        self
    }

    /// These routes under `prefix` (`/api/v1`).
    pub fn nest(self, prefix: &str) -> Self {
        Routes {
            router: Router::new().nest(prefix, self.router),
            listed: self
                .listed
                .into_iter()
                .map(|route| Route {
                    path: format!("{prefix}{}", route.path),
                    ..route
                })
                .collect(),
        }
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.listed.extend(other.listed);
        self
    }

    /// The router changed by `change` (a layer, say); the list stays.
    pub fn map(mut self, change: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = change(self.router);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<Route>) {
        (self.router, self.listed)
    }
}
