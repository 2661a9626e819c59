package bridge

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMetricTopics is how many topics get metrics of their own by
// default (Config.MetricTopics).
const DefaultMetricTopics = 20

// otherTopics is the topic label of the topics beyond the busiest.
const otherTopics = "other"

var (
	topicSubscribersDesc = prometheus.NewDesc("herald_topic_subscribers",
		"Subscribers on this node by topic or pattern as subscribed, for the busiest topics (--metrics-topics); the rest added up under topic=\"other\".",
		[]string{"topic"}, nil)
	topicRateDesc = prometheus.NewDesc("herald_topic_publish_rate",
		"Events per second published through this node over the last minute, by topic, for the busiest topics (--metrics-topics); the rest added up under topic=\"other\".",
		[]string{"topic"}, nil)
)

// topicCollector exports per-topic figures of the n busiest topics of this
// node (most subscribers, then the highest publish rate), computed at
// scrape time from the figures presence keeps anyway: a million topics
// make n+1 series, never more.
type topicCollector struct {
	p *presence
	n int
}

func (c *topicCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- topicSubscribersDesc
	ch <- topicRateDesc
}

func (c *topicCollector) Collect(ch chan<- prometheus.Metric) {
	subs, _ := c.p.hub.presence()
	pubs := c.p.publishedReport()
	type row struct {
		topic string
		subs  int32
		pubs  int32
	}
	rows := make([]row, 0, len(subs)+len(pubs))
	for t, n := range subs {
		rows = append(rows, row{t, n, pubs[t].LastMinute})
	}
	for t, r := range pubs {
		if _, ok := subs[t]; !ok {
			rows = append(rows, row{t, 0, r.LastMinute})
		}
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.subs, a.subs), cmp.Compare(b.pubs, a.pubs), strings.Compare(a.topic, b.topic))
	})
	var other row
	for i, r := range rows {
		if i >= c.n {
			other.subs += r.subs
			other.pubs += r.pubs
			continue
		}
		ch <- prometheus.MustNewConstMetric(topicSubscribersDesc, prometheus.GaugeValue, float64(r.subs), r.topic)
		ch <- prometheus.MustNewConstMetric(topicRateDesc, prometheus.GaugeValue, float64(r.pubs)/rateWindow.Seconds(), r.topic)
	}
	if len(rows) > c.n {
		ch <- prometheus.MustNewConstMetric(topicSubscribersDesc, prometheus.GaugeValue, float64(other.subs), otherTopics)
		ch <- prometheus.MustNewConstMetric(topicRateDesc, prometheus.GaugeValue, float64(other.pubs)/rateWindow.Seconds(), otherTopics)
	}
}
