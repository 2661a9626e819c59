package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/interpreter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/sse"
)

// Rendering: an event becomes JSON, and the JSON an SSE frame, at most once
// per node and rendering, whatever the number of its subscribers; every
// stream, shard and replay on the node shares the bytes, which never change
// once made.

// rendered is what this node made of an event. It is attached to the event
// (broker.Event.Attach) and lives as long as the event.
type rendered struct {
	// json is the payload in the default JSON form, once rendered: by the
	// publish path for types that protojson may refuse after they parse
	// (renderPlan), to check them, which spares the hub a decode and an
	// encode; otherwise by the hub on first delivery, so that an event no
	// one receives is never rendered. Guarded by mu until frame is set.
	json []byte
	// frame is the event's frame in the default rendering, once encoded:
	// it points to frameBytes, which is set once, before it.
	frame      atomic.Pointer[[]byte]
	frameBytes []byte
	// mu is held while encoding a frame and guards others.
	mu sync.Mutex
	// others are the frames in non-default renderings, by Rendering.key.
	others map[string][]byte
	// vars are what filters see of the event, built once (varsOnce), and
	// results what each filter made of it (filter.go); the map is guarded
	// by mu, each result by its own once, so that shards evaluate
	// different filters of one event in parallel.
	varsOnce sync.Once
	vars     interpreter.Activation
	results  map[*filter]*filterResult
}

// renderedOf returns what this node rendered of ev, attaching an empty
// record on first use.
func renderedOf(ev *broker.Event) *rendered {
	if r, ok := ev.Local().(*rendered); ok {
		return r
	}
	return ev.Attach(&rendered{}).(*rendered)
}

// heartbeatFrame is a comment line: the same in every rendering.
var heartbeatFrame = sse.AppendComment(nil, "")

// frame returns ev's SSE frame in the default rendering, encoding and
// caching it on first use. Shards may ask for it at the same time: one
// encodes, the others wait for it.
func (h *Hub) frame(ev *broker.Event) []byte {
	r := renderedOf(ev)
	if f := r.frame.Load(); f != nil {
		return *f
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.frame.Load(); f != nil {
		return *f
	}
	// JSON rendered now goes into a buffer of the pool, as the frame holds
	// it; JSON rendered before (at publish, or for another rendering) may
	// be in a caller's hands, and is left alone.
	var scratch *[]byte
	var dst []byte
	if r.json == nil {
		scratch = jsonScratch.Get().(*[]byte)
		dst = (*scratch)[:0]
	}
	data := h.defaultJSON(ev, r, dst)
	b := h.appendFrame(make([]byte, 0, len(data)+len(ev.Type)+len(h.epoch)+48), ev, ev.Type, data)
	r.json = dataIn(b, data)
	if scratch != nil && cap(data) <= maxJSONScratch {
		*scratch = data[:0]
		jsonScratch.Put(scratch)
	}
	r.frameBytes = b
	r.frame.Store(&r.frameBytes)
	return b
}

// jsonScratch holds the buffers that frame renders JSON into before it
// writes the frame; maxJSONScratch bounds what goes back to it.
var jsonScratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxJSONScratch = 64 << 10

// dataIn returns data as the part of frame b that holds it, so that an
// event retained for replays keeps its JSON once, in its frame, instead of
// twice; or a copy of data, should b hold it otherwise than whole on one
// line (JSON has no raw line breaks, so it never does).
func dataIn(b, data []byte) []byte {
	end := len(b) - len("\n\n")
	if start := end - len(data); start >= 0 && bytes.Equal(b[start:end], data) {
		return b[start:end:end]
	}
	return bytes.Clone(data)
}

// defaultJSON returns the payload in the default JSON form, rendering it
// on first use, into dst when it renders from the wire (nil: a slice of its
// own); with r.mu held. A deletion's data is {"topic": "..."}.
func (h *Hub) defaultJSON(ev *broker.Event, r *rendered, dst []byte) []byte {
	if r.json == nil && isDeletion(ev) {
		r.json, _ = json.Marshal(struct {
			Topic string `json:"topic"`
		}{ev.Topic})
	}
	if r.json == nil {
		var err error
		if r.json, err = h.renderDefault(dst, ev); err != nil {
			r.json = h.unrenderable(ev, err)
		}
	}
	return r.json
}

// renderWire renders payload, a message of md, from its bytes
// (wirejson.go), appending to dst (nil: a slice of its own), if md is a
// type checked on the wire and the check accepts it; false otherwise.
func renderWire(dst []byte, md protoreflect.MessageDescriptor, payload []byte, o wireJSONOpts) ([]byte, bool) {
	if !wireCheckable(md) || !wireCheck(md, payload, maxPayloadDepth) {
		return nil, false
	}
	if dst == nil {
		dst = make([]byte, 0, 2*len(payload)+16)
	}
	return appendWireJSON(dst, md, payload, o)
}

// renderDefault renders ev's payload as protojson does by default: a
// payload of a type checked on the wire straight from its bytes
// (wirejson.go), any other decoded into a message of checkPayload's pool,
// as the JSON keeps nothing of it. From the wire it appends to dst (nil: a
// slice of its own); a payload decoded first gets a slice of its own.
func (h *Hub) renderDefault(dst []byte, ev *broker.Event) ([]byte, error) {
	mt, err := payloadType(h.types, ev.TypeURL)
	if err != nil {
		return nil, err
	}
	if out, ok := renderWire(dst, mt.Descriptor(), ev.Payload, wireJSONOpts{}); ok {
		return out, nil
	}
	msg, sc, err := checkPayload(h.types, mt, ev.TypeURL, ev.Payload)
	if err != nil {
		return nil, err
	}
	defer sc.put(msg)
	return renderJSON(h.types, msg, protojson.MarshalOptions{})
}

// frameFor returns ev's frame in rendering r (nil: the default), encoding
// it on first use; later subscribers with the same rendering share it.
func (h *Hub) frameFor(ev *broker.Event, r *Rendering) []byte {
	if r == nil {
		return h.frame(ev)
	}
	k := r.key()
	rd := renderedOf(ev)
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if f, ok := rd.others[k]; ok {
		return f
	}
	h.metrics.renderings.Inc()
	var data []byte
	if r.json() && !isDeletion(ev) {
		var err error
		if data, err = h.render(ev, r); err != nil {
			data = h.unrenderable(ev, err)
		}
	} else {
		data = h.defaultJSON(ev, rd, nil)
	}
	name := ev.Type
	if r.Envelope {
		data, name = envelope(ev.Type, data), ""
	}
	f := h.appendFrame(make([]byte, 0, len(data)+len(ev.Type)+len(h.epoch)+48), ev, name, data)
	if rd.others == nil {
		rd.others = make(map[string][]byte, 1)
	}
	rd.others[k] = f
	return f
}

func (h *Hub) appendFrame(b []byte, ev *broker.Event, name string, data []byte) []byte {
	return sse.AppendEvent(b, broker.EventID{Epoch: h.epoch, Seq: ev.Seq}.String(), name, data)
}

// envelope is the data of an unnamed frame (Rendering.Envelope): the event
// type beside the payload's JSON, {"type": "...", "payload": ...}.
func envelope(eventType string, payload []byte) []byte {
	t, _ := json.Marshal(eventType)
	b := make([]byte, 0, len(payload)+len(t)+24)
	b = append(b, `{"type":`...)
	b = append(b, t...)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// unrenderable is the data sent for an event this node cannot render. It
// was validated when published, so only a node that lacks the schema gets
// here: it delivers what it can rather than drop the event.
func (h *Hub) unrenderable(ev *broker.Event, err error) []byte {
	h.log.Warn("cannot render event as JSON", "topic", ev.Topic, "seq", ev.Seq, "err", err)
	data, _ := json.Marshal(struct {
		Type  string `json:"@type"`
		Error string `json:"@error"`
	}{ev.TypeURL, "payload type not known to this node"})
	return data
}

func (h *Hub) render(ev *broker.Event, r *Rendering) ([]byte, error) {
	if !r.EmitUnpopulated && len(r.Fields) == 0 {
		// proto_names and enum_numbers alone: from the wire, as the
		// default rendering is.
		if mt, err := payloadType(h.types, ev.TypeURL); err == nil {
			if out, ok := renderWire(nil, mt.Descriptor(), ev.Payload, wireJSONOpts{protoNames: r.ProtoNames, enumNumbers: r.EnumNumbers}); ok {
				return out, nil
			}
		}
	}
	msg, err := decodePayload(h.types, ev.TypeURL, ev.Payload)
	if err != nil {
		return nil, err
	}
	var tree fieldTree
	// A payload of a type rendered whole (a Value, a Timestamp...) is
	// sent whole: a field mask selects fields of a JSON object.
	if len(r.Fields) > 0 && !renderedWhole(msg.ProtoReflect().Descriptor()) {
		tree = buildTree(msg.ProtoReflect().Descriptor(), r.Fields)
		project(msg.ProtoReflect(), tree)
	}
	data, err := renderJSON(h.types, msg, protojson.MarshalOptions{
		UseProtoNames:   r.ProtoNames,
		UseEnumNumbers:  r.EnumNumbers,
		EmitUnpopulated: r.EmitUnpopulated,
	})
	if err != nil || tree == nil || !r.EmitUnpopulated {
		return data, err
	}
	// EmitUnpopulated also emits the fields the mask left out: drop them.
	return filterJSON(data, msg.ProtoReflect().Descriptor(), tree, r.ProtoNames)
}

// renderJSON renders a payload as single-line protojson, compacted:
// protojson varies its whitespace from build to build on purpose, and
// subscribers should get the same bytes from every Herald.
func renderJSON(types TypeResolver, msg proto.Message, opts protojson.MarshalOptions) ([]byte, error) {
	opts.Resolver = types
	out, err := opts.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: payload of type %s cannot be rendered as JSON: %v", broker.ErrInvalidEvent, msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return compactJSON(out), nil
}

// compactJSON drops the whitespace between the tokens of valid JSON, in
// place: a quarter of the cost of json.Compact on the publish path.
func compactJSON(b []byte) []byte {
	if !bytes.ContainsAny(b, " \t\n\r") {
		return b
	}
	out := b[:0]
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			continue
		}
		out = append(out, c)
	}
	return out
}
