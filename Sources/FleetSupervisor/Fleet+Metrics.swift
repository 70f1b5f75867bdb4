import FleetCore
import Metrics

extension Fleet {
    /// Runs on every state change of any tenant: counted from the board, without a hop per tenant.
    func updateMetrics() async {
        // A tenant stopped, suspended or dropped: pages it held may go back to the host.
        rebalanceHugePagePool()
        let counts = board.counts(of: supervisors.keys) { $0.state }
        for state in TenantState.allCases {
            Gauge(label: "pgfleet_tenants", dimensions: [("state", state.rawValue)]).record(counts[state] ?? 0)
        }
    }
}
