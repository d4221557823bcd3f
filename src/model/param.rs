//! A trainable tensor as the optimizer sees it.

use candle_core::Var;

/// A trainable tensor with its checkpoint name and whether weight decay applies.
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
}
