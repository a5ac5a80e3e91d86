//! `leader_election_master_status{name}`: controller-runtime's gauge, under its name and help.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

/// 1 while this process holds the lease, 0 otherwise; the series exists only with
/// `--leader-elect`, as in controller-runtime.
#[derive(Clone, Debug)]
pub struct MasterStatus {
    gauge: Gauge,
}

impl MasterStatus {
    /// Registers the gauge for the lease `lease_name`, at 0.
    pub fn register(registry: &mut Registry, lease_name: &str) -> Self {
        let family = Family::<LeaseLabels, Gauge>::default();
        let gauge = family
            .get_or_create(&LeaseLabels {
                name: lease_name.to_owned(),
            })
            .clone();
        // prometheus-client ends the help with its own period.
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates \
             backup, 1 indicates master. 'name' is the string used to identify the lease. \
             Please make sure to group by name",
            family,
        );
        Self { gauge }
    }

    /// Publishes whether this process is the leader.
    pub fn set(&self, leading: bool) {
        self.gauge.set(i64::from(leading));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn the_gauge_starts_at_zero_and_follows_the_leadership() {
        let mut registry = Registry::default();
        let status = MasterStatus::register(&mut registry, "podscaler-operator-leader");
        let series = |value| {
            format!("leader_election_master_status{{name=\"podscaler-operator-leader\"}} {value}\n")
        };
        assert!(page(&registry).contains(&series(0)), "{}", page(&registry));
        status.set(true);
        assert!(page(&registry).contains(&series(1)));
        status.clone().set(false);
        assert!(page(&registry).contains(&series(0)));
        let text = page(&registry);
        assert!(
            text.contains("# HELP leader_election_master_status Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.\n"),
            "{text}"
        );
    }
}
