//! The values that cross the storage seam: the four types both databases agree on.

use crate::{StoreError, StoreResult};

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl<const N: usize> From<[u8; N]> for Value {
    fn from(v: [u8; N]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a `&[Value]` parameter list: `params![id, name, 3]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::Value::from($v)),*][..] };
}

/// One result row; columns are read by position, in the order of the SELECT list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> StoreResult<&Value> {
        self.0.get(i).ok_or(StoreError::Type {
            column: i,
            message: format!("row has only {} columns", self.0.len()),
        })
    }

    fn mismatch(i: usize, want: &str, got: &Value) -> StoreError {
        StoreError::Type {
            column: i,
            message: format!("expected {want}, found {got:?}"),
        }
    }

    pub fn i64(&self, i: usize) -> StoreResult<i64> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(Self::mismatch(i, "integer", other)),
        }
    }

    pub fn opt_i64(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.i64(i).map(Some),
        }
    }

    pub fn bool(&self, i: usize) -> StoreResult<bool> {
        Ok(self.i64(i)? != 0)
    }

    pub fn text(&self, i: usize) -> StoreResult<String> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(Self::mismatch(i, "text", other)),
        }
    }

    pub fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn bytes(&self, i: usize) -> StoreResult<Vec<u8>> {
        match self.at(i)? {
            Value::Bytes(v) => Ok(v.clone()),
            other => Err(Self::mismatch(i, "bytes", other)),
        }
    }

    pub fn opt_bytes(&self, i: usize) -> StoreResult<Option<Vec<u8>>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.bytes(i).map(Some),
        }
    }

    pub fn values(&self) -> &[Value] {
        &self.0
    }
}
