package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/internal/broker"
)

// adminFlags are serve's settings of the admin API (docs/admin.md):
// the node's name among those sharing the broker, how often it reports
// its figures, and how many topics get metrics of their own.
type adminFlags struct {
	nodeName         string
	presenceInterval time.Duration
	metricsTopics    int
}

func (a *adminFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&a.nodeName, "node-name", "", "this node's name in the admin API (GET /v1/nodes): 1 to 64 of a-z, 0-9 and -, unique among the nodes sharing the broker (default: the host name and a random suffix)")
	fs.DurationVar(&a.presenceInterval, "presence-interval", bridge.DefaultPresenceInterval, "how often the node reports its subscribers and publishes through the broker and reads the revocations: the admin API's figures are about this old, a revocation reaches other nodes' streams within it, and a stopped node's figures expire after three intervals")
	fs.IntVar(&a.metricsTopics, "metrics-topics", bridge.DefaultMetricTopics, "how many of this node's busiest topics get Prometheus metrics of their own (herald_topic_subscribers, herald_topic_publish_rate); the rest are added up under topic=\"other\"; 0 for none")
}

func (a *adminFlags) validate() error {
	if a.nodeName != "" {
		if err := broker.ValidNode(a.nodeName); err != nil {
			return fmt.Errorf("serve: --node-name: %v", err)
		}
	}
	if a.presenceInterval < 100*time.Millisecond {
		return fmt.Errorf("serve: --presence-interval must be at least 100ms, got %v", a.presenceInterval)
	}
	if a.metricsTopics < 0 {
		return fmt.Errorf("serve: --metrics-topics must not be negative, got %d", a.metricsTopics)
	}
	return nil
}

func (a *adminFlags) apply(cfg *bridge.Config) {
	cfg.NodeName, cfg.PresenceInterval, cfg.MetricTopics = a.nodeName, a.presenceInterval, a.metricsTopics
	if a.metricsTopics == 0 {
		cfg.MetricTopics = -1
	}
}
