//! CPU time from `/proc/self/stat`: this process's (every thread) and that
//! of its children once waited for (`wrk`). On a shared machine requests
//! per second move with the neighbours' load; CPU time per request moves
//! far less, so it shows what a change costs or saves.

use anyhow::Context;

/// `/proc` counts in USER_HZ ticks, 100 a second on Linux's mainstream
/// architectures (what `sysconf(_SC_CLK_TCK)` answers).
const TICKS_PER_SECOND: f64 = 100.0;

/// Seconds of CPU (user + system) used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTimes {
    pub process: f64,
    pub children: f64,
}

impl CpuTimes {
    pub fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        Self::parse(&stat)
    }

    fn parse(stat: &str) -> anyhow::Result<Self> {
        // Fields after the command name, which is in parentheses and may
        // hold spaces: the first is field 3 (state).
        let (_, rest) = stat
            .rsplit_once(')')
            .context("no command name in the stat line")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let seconds = |field: usize| -> anyhow::Result<f64> {
            let text = fields.get(field - 3).context("a short stat line")?;
            Ok(text
                .parse::<f64>()
                .context("a stat field is not a number")?
                / TICKS_PER_SECOND)
        };
        // utime, stime, cutime, cstime: fields 14 to 17.
        Ok(Self {
            process: seconds(14)? + seconds(15)?,
            children: seconds(16)? + seconds(17)?,
        })
    }

    /// What was used since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            process: self.process - earlier.process,
            children: self.children - earlier.children,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_after_a_command_name_with_spaces() {
        let line = "4242 (edge bench) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 30 20 20 0 9 0";
        assert_eq!(
            CpuTimes::parse(line).expect("parses"),
            CpuTimes {
                process: 3.0,
                children: 0.5
            }
        );
        assert!(CpuTimes::parse("4242 (cut) S 1 2").is_err());
    }

    #[test]
    fn this_process_can_read_its_own() {
        let now = CpuTimes::now().expect("reads /proc/self/stat");
        assert!(now.process >= 0.0 && now.children >= 0.0, "{now:?}");
    }
}
