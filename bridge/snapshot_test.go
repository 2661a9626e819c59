package bridge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

func stats(t testing.TB, region string, players int) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(map[string]any{"region": region, "players": players})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type synced struct {
	Topics      int
	LastEventID string
}

// A snapshot sends each matching topic's latest event, in id order,
// leaves deleted topics out, ends with herald.synced (whose id is the
// snapshot's position), then live events.
func TestSnapshot(t *testing.T) {
	s := startServer(t, serverOpts{})
	s.publish(t, "monitoring.a", stats(t, "eu", 1))
	b := s.publish(t, "monitoring.b", stats(t, "us", 2))
	a := s.publish(t, "monitoring.a", stats(t, "eu", 3))
	s.publish(t, "monitoring.c", stats(t, "eu", 4))
	s.publish(t, "other.x", stats(t, "eu", 5))
	del, err := s.client.DeleteTopicState(ctxT(t), &heraldv1.DeleteTopicStateRequest{Topic: "monitoring.c"})
	if err != nil {
		t.Fatal(err)
	}

	st := s.subscribe(t, "topic=monitoring.>&snapshot=true", nil)
	if got := []string{st.next(t).LastEventID, st.next(t).LastEventID}; got[0] != b || got[1] != a {
		t.Fatalf("snapshot ids %v, want [%s %s] (the latest of b and a, in id order; c deleted)", got, b, a)
	}
	end := st.next(t)
	var sy synced
	if end.Type != bridge.SyncedEventType || json.Unmarshal([]byte(end.Data), &sy) != nil || sy.Topics != 2 || sy.LastEventID != del.GetId() || end.LastEventID != del.GetId() {
		t.Fatalf("end of snapshot: %q %q %s, want herald.synced with 2 topics at %s", end.Type, end.LastEventID, end.Data, del.GetId())
	}
	live := s.publish(t, "monitoring.b", stats(t, "us", 6))
	if ev := st.next(t); ev.LastEventID != live {
		t.Fatalf("after the snapshot: %s, want the live %s", ev.LastEventID, live)
	}

	// Filtered: the snapshot holds only what the filter accepts.
	eu := s.subscribe(t, "topic=monitoring.>&snapshot=true&"+filtered(`payload.region == "eu"`), nil)
	if ev := eu.next(t); ev.LastEventID != a {
		t.Fatalf("filtered snapshot: %s, want %s", ev.LastEventID, a)
	}
	if ev := eu.next(t); ev.Type != bridge.SyncedEventType || !strings.Contains(ev.Data, `"topics":1`) {
		t.Fatalf("filtered snapshot's end: %q %s", ev.Type, ev.Data)
	}

	// A resume from a known id takes no snapshot; one with a gap takes a
	// fresh one after the gap.
	resumed := s.subscribe(t, "topic=monitoring.>&snapshot=true&last_event_id="+a, nil)
	if ev := resumed.next(t); ev.LastEventID == b || ev.Type == bridge.SyncedEventType {
		t.Fatalf("a resume from %s took a snapshot: %q %q", a, ev.Type, ev.LastEventID)
	}
	gapped := s.subscribe(t, "topic=monitoring.>&snapshot=true&last_event_id=garbage", nil)
	if ev := gapped.next(t); ev.Type != bridge.GapEventType {
		t.Fatalf("a resume with a gap: first %q, want herald.gap", ev.Type)
	}
	for want := 0; want < 3; want++ { // b, a as of now, then synced
		ev := gapped.next(t)
		if want == 2 && ev.Type != bridge.SyncedEventType {
			t.Fatalf("after the gap: %q %s, want the fresh snapshot to end", ev.Type, ev.Data)
		}
	}

	// gRPC: events, Synced, live.
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"monitoring.>"}, Snapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := sub.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if sy := m.GetSynced(); sy != nil {
			if sy.GetTopics() != 2 {
				t.Fatalf("gRPC Synced %v, want 2 topics", sy)
			}
			break
		}
		got = append(got, m.GetEvent().GetTopic())
	}
	if strings.Join(got, " ") != "monitoring.a monitoring.b" {
		t.Fatalf("gRPC snapshot topics %v", got)
	}
}

// More topics than --max-snapshot-topics: a 400 naming the limit.
func TestSnapshotTooLarge(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{MaxSnapshotTopics: 2}})
	for i := range 3 {
		s.publish(t, fmt.Sprintf("many.t%d", i), stats(t, "eu", i))
	}
	r, err := http.Get(s.url + "/v1/events?topic=many.>&snapshot=true")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 400 || !strings.Contains(string(body), "more than 2 topics (--max-snapshot-topics)") {
		t.Fatalf("a snapshot over the limit: %d %s", r.StatusCode, body)
	}
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"many.>"}, Snapshot: true})
	if err == nil {
		_, err = sub.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC snapshot over the limit: %v", err)
	}
	if s.Server == nil || metricValue(t, s.url, "herald_subscribers") != 0 {
		t.Fatal("a refused snapshot left a subscriber behind")
	}
}

// While events are being published, a snapshot subscription sees each
// topic's state and then every later event of it, once, with ids that only
// increase: no gap and no duplicate at the seam.
func TestSnapshotSeam(t *testing.T) {
	s := startServer(t, serverOpts{})
	const topics, rounds = 8, 60
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		for r := range rounds {
			for i := range topics {
				topic := fmt.Sprintf("seam.t%d", i)
				s.publish(t, topic, stats(t, topic, r))
			}
			if r == rounds/3 {
				close(started)
			}
		}
	})
	<-started
	st := s.subscribe(t, "topic=seam.>&snapshot=true", nil)
	wg.Wait()
	last := map[string]int{} // topic → last round seen
	var prev uint64
	seen, synced := 0, false
	for seen < topics || !synced || anyBelow(last, rounds-1) {
		ev := st.next(t)
		if ev.Type == bridge.SyncedEventType {
			synced = true
			continue
		}
		seq, err := strconv.ParseUint(ev.LastEventID[strings.LastIndexByte(ev.LastEventID, '-')+1:], 10, 64)
		if err != nil || seq <= prev {
			t.Fatalf("id %s after seq %d: ids must increase", ev.LastEventID, prev)
		}
		prev = seq
		var p struct {
			Region  string // the topic
			Players int    // the round
		}
		if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
			t.Fatal(err)
		}
		key := p.Region
		if r, ok := last[key]; ok && p.Players != r+1 {
			t.Fatalf("topic %s: round %d after %d (synced %v): a gap or a duplicate", key, p.Players, r, synced)
		}
		if _, ok := last[key]; !ok {
			seen++
		}
		last[key] = p.Players
	}
}

func anyBelow(m map[string]int, n int) bool {
	for _, v := range m {
		if v < n {
			return true
		}
	}
	return false
}
