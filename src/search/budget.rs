//! What a search must stay within: a latency (ms, batch 1), a parameter count (millions) or an
//! exported size (MB of 10^6 bytes).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One limit on one cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Budget {
    LatencyMs(f64),
    ParamsM(f64),
    SizeMb(f64),
}

/// A candidate's three costs: predicted (or measured) median latency, parameters, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    pub latency_ms: f64,
    pub params: usize,
    pub size_bytes: usize,
}

impl Budget {
    /// Reads `latency_ms=2.0`, `params_m=10` or `size_mb=40`.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((name, value)) = text.split_once('=') else {
            bail!("budget '{text}': write latency_ms=2.0, params_m=10 or size_mb=40");
        };
        let value: f64 = match value.trim().parse() {
            Ok(v) if v > 0.0 && f64::is_finite(v) => v,
            _ => bail!("budget '{text}': the limit must be a positive number"),
        };
        Ok(match name.trim() {
            "latency_ms" => Self::LatencyMs(value),
            "params_m" => Self::ParamsM(value),
            "size_mb" => Self::SizeMb(value),
            other => {
                bail!("budget '{text}': unknown cost '{other}' (latency_ms, params_m or size_mb)")
            }
        })
    }

    /// The limit, in the cost's unit.
    pub fn limit(&self) -> f64 {
        match *self {
            Self::LatencyMs(v) | Self::ParamsM(v) | Self::SizeMb(v) => v,
        }
    }

    /// The cost this budget limits, in its unit.
    pub fn cost(&self, c: &Costs) -> f64 {
        match self {
            Self::LatencyMs(_) => c.latency_ms,
            Self::ParamsM(_) => c.params as f64 / 1e6,
            Self::SizeMb(_) => c.size_bytes as f64 / 1e6,
        }
    }

    /// The cost's unit as people write it.
    pub fn unit(&self) -> &'static str {
        match self {
            Self::LatencyMs(_) => "ms",
            Self::ParamsM(_) => "M parameters",
            Self::SizeMb(_) => "MB",
        }
    }

    /// How far `c` is over the limit (0 within it).
    pub fn violation(&self, c: &Costs) -> f64 {
        (self.cost(c) - self.limit()).max(0.0)
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LatencyMs(v) => write!(f, "latency_ms={v}"),
            Self::ParamsM(v) => write!(f, "params_m={v}"),
            Self::SizeMb(v) => write!(f, "size_mb={v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_costs_and_refuses_the_rest() {
        assert_eq!(
            Budget::parse("latency_ms=2.5").unwrap(),
            Budget::LatencyMs(2.5)
        );
        assert_eq!(Budget::parse("params_m=10").unwrap(), Budget::ParamsM(10.0));
        assert_eq!(
            Budget::parse("size_mb=40").unwrap().to_string(),
            "size_mb=40"
        );
        for bad in ["latency=2", "latency_ms=-1", "latency_ms=x", "2.0"] {
            assert!(Budget::parse(bad).is_err(), "{bad}");
        }
        let c = Costs {
            latency_ms: 3.0,
            params: 12_000_000,
            size_bytes: 0,
        };
        assert_eq!(Budget::LatencyMs(2.5).violation(&c), 0.5);
        assert_eq!(Budget::ParamsM(12.0).violation(&c), 0.0);
    }
}
