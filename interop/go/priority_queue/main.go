// priority_queue: a queue declared with x-max-priority 10 gets messages of mixed priorities
// while nobody consumes it; a consumer then receives them highest priority first, and in
// publish order within a priority. A message without the priority property counts as 0; one
// above the maximum (here 15) counts as the maximum, 10 (and keeps its property unchanged).
package main

import (
	"fmt"
	"sort"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

const maxPriority = 10

type message struct {
	body        string
	priority    uint8 // the property; 0 with hasPriority=false = no priority property
	hasPriority bool
}

var messages = []message{
	{"p0-none-1", 0, false},
	{"p5-1", 5, true},
	{"p10-1", 10, true},
	{"p1-1", 1, true},
	{"p5-2", 5, true},
	{"p15-1", 15, true}, // above x-max-priority: treated as 10
	{"p0-1", 0, true},
	{"p10-2", 10, true},
	{"p3-1", 3, true},
	{"p0-none-2", 0, false},
	{"p5-3", 5, true},
	{"p1-2", 1, true},
}

func effective(m message) uint8 {
	if m.priority > maxPriority {
		return maxPriority
	}
	return m.priority
}

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	queue := s.UniqueName("priority_queue")
	_, err := ch.QueueDeclare(queue, false, false, true, false, amqp.Table{"x-max-priority": int32(maxPriority)})
	s.Must(err, "queue.declare %q with x-max-priority %d", queue, maxPriority)

	for _, m := range messages {
		p := amqp.Publishing{Body: []byte(m.body)}
		if m.hasPriority {
			p.Priority = m.priority
		}
		s.Publish(ch, "", queue, false, p)
	}
	// Wait until every message is in the queue before consuming.
	s.WaitFor(func() bool {
		q, err := ch.QueueInspect(queue)
		s.Must(err, "passive queue.declare %q", queue)
		return q.Messages == len(messages)
	}, 10*time.Second, func() string { return fmt.Sprintf("%d messages ready in the queue", len(messages)) })

	want := append([]message(nil), messages...)
	sort.SliceStable(want, func(i, j int) bool { return effective(want[i]) > effective(want[j]) })
	wantBodies := []string{}
	for _, m := range want {
		wantBodies = append(wantBodies, m.body)
	}

	deliveries := s.Consume(ch, queue, "by-priority", false)
	got := []string{}
	for i, m := range want {
		d := s.Receive(deliveries, 10*time.Second, "delivery %d of %d (got %q)", i+1, len(messages), got)
		got = append(got, string(d.Body))
		s.Check(d.Priority == m.priority, "%q arrived with priority property %d, published with %d", d.Body, d.Priority, m.priority)
		s.Must(d.Ack(false), "basic.ack")
	}
	fmt.Printf("consumed: %q\n", got)
	s.Check(fmt.Sprint(got) == fmt.Sprint(wantBodies), "consumed in order %q, expected %q (highest priority first, FIFO within a priority)", got, wantBodies)
	s.NoMore(deliveries, 200*time.Millisecond, "all %d messages were consumed", len(messages))

	s.Must(ch.Cancel("by-priority", false), "basic.cancel")
	_, err = ch.QueueDelete(queue, false, false, false)
	s.Must(err, "queue.delete %q", queue)
	s.Must(conn.Close(), "closing the connection")
	fmt.Println("ok")
}
