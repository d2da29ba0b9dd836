//! The cluster token: a shared secret every RPC carries, except the gRPC
//! health check (container health probes and the coordinator's reachability
//! probe need no secret, and learn nothing from it).
//!
//! Clients and servers alike add it to what they send with [`Token`], an
//! interceptor on their channels; servers check it with [`Guard`], an
//! interceptor on every service but health. Without a token configured
//! nothing is added and nothing is checked.

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::ProtoError;

/// The metadata key the token travels in.
pub const METADATA_KEY: &str = "authorization";

/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 4096;

/// A channel that carries the cluster token on every call.
pub type Authed = InterceptedService<Channel, Token>;

/// Wraps `channel` so that every call carries `token`.
pub fn authed(channel: Channel, token: &Token) -> Authed {
    InterceptedService::new(channel, token.clone())
}

fn header(secret: &str) -> Result<MetadataValue<Ascii>, ProtoError> {
    let secret = secret.trim();
    if secret.is_empty()
        || secret.len() > MAX_TOKEN_LEN
        || !secret.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ProtoError::BadParam(format!(
            "a cluster token is 1 to {MAX_TOKEN_LEN} printable ASCII characters without spaces"
        )));
    }
    format!("Bearer {secret}")
        .parse()
        .map_err(|_| ProtoError::BadParam("the cluster token is not valid metadata".into()))
}

/// Adds the cluster token to every outgoing call.
#[derive(Clone, Debug, Default)]
pub struct Token {
    header: Option<MetadataValue<Ascii>>,
}

impl Token {
    /// No token: calls go out as they are.
    pub fn none() -> Token {
        Token::default()
    }

    /// The token `secret` (surrounding whitespace, such as a file's final
    /// newline, is dropped).
    pub fn new(secret: &str) -> Result<Token, ProtoError> {
        Ok(Token {
            header: Some(header(secret)?),
        })
    }

    /// The token `value` if given, else the contents of `file`, else no
    /// token.
    pub fn from_value_or_file(
        value: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Token, ProtoError> {
        match (value, file) {
            (Some(v), _) => Token::new(v),
            (None, Some(f)) => {
                let secret = std::fs::read_to_string(f).map_err(|e| {
                    ProtoError::BadParam(format!("cannot read the token file {}: {e}", f.display()))
                })?;
                Token::new(&secret)
            }
            (None, None) => Ok(Token::none()),
        }
    }

    pub fn is_set(&self) -> bool {
        self.header.is_some()
    }

    /// The server-side check for the same token.
    pub fn guard(&self) -> Guard {
        Guard {
            expected: self.header.as_ref().map(|h| Arc::from(h.as_bytes())),
        }
    }
}

impl Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert(METADATA_KEY, h.clone());
        }
        Ok(req)
    }
}

/// Refuses every call that does not carry the cluster token, with
/// `UNAUTHENTICATED`.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    expected: Option<Arc<[u8]>>,
}

/// Compares in time that depends only on the lengths, so the comparison
/// does not tell an attacker how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for Guard {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(want) = &self.expected else {
            return Ok(req);
        };
        match req.metadata().get(METADATA_KEY) {
            Some(got) if same(got.as_bytes(), want) => Ok(req),
            Some(_) => Err(Status::unauthenticated(
                "wrong cluster token: this cluster takes another (--token-file or LOCKSTEP_TOKEN)",
            )),
            None => Err(Status::unauthenticated(
                "this cluster requires a token: pass --token-file FILE or set LOCKSTEP_TOKEN",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(token: &Token, guard: &Guard) -> Result<(), tonic::Code> {
        let req = token.clone().call(Request::new(())).map_err(|s| s.code())?;
        guard.clone().call(req).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn the_guard_takes_the_token_and_nothing_else() {
        let t = Token::new("s3cret\n").unwrap();
        let g = t.guard();
        assert_eq!(call(&t, &g), Ok(()));
        assert_eq!(call(&Token::none(), &g), Err(tonic::Code::Unauthenticated));
        assert_eq!(
            call(&Token::new("s3cres").unwrap(), &g),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            call(&Token::new("s3cret2").unwrap(), &g),
            Err(tonic::Code::Unauthenticated)
        );
        // No token configured: nothing is checked.
        assert_eq!(call(&Token::none(), &Token::none().guard()), Ok(()));
        assert_eq!(call(&t, &Token::none().guard()), Ok(()));
        for bad in ["", "  ", "with space", "caf\u{e9}"] {
            assert!(Token::new(bad).is_err(), "{bad:?}");
        }
    }
}
