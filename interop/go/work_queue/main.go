// work_queue: a named, non-durable queue shared by two workers with prefetch 1 and manual
// acks. 20 messages are each processed exactly once, and since a worker holding an unacked
// message is not given another one, the slow worker gets few messages and the fast one the
// rest (fair dispatch). (amqp091-go buffers deliveries internally, so unlike the Python and
// Node versions this one cannot see a second delivery arrive while the first is held; the
// distribution check covers prefetch.)
package main

import (
	"fmt"
	"sort"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

const messages = 20

type worker struct {
	name  string
	delay time.Duration // how long a message is held before its ack
}

var workers = []worker{{"slow", 300 * time.Millisecond}, {"fast", 10 * time.Millisecond}}

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	queue := s.UniqueName("work_queue")
	q, err := ch.QueueDeclare(queue, false, false, false, false, nil)
	s.Must(err, "queue.declare %q", queue)
	s.Check(q.Name == queue, "queue.declare-ok names %q, expected %q", q.Name, queue)

	var mu sync.Mutex
	got := map[string][]string{}
	acked := 0
	chans := map[string]*amqp.Channel{}
	var wg sync.WaitGroup
	for _, w := range workers {
		w := w
		wch := s.Channel(conn)
		s.Must(wch.Qos(1, 0, false), "basic.qos prefetch 1")
		chans[w.name] = wch
		deliveries := s.Consume(wch, queue, "worker-"+w.name, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				text := string(d.Body)
				s.Check(!d.Redelivered, "worker %s: %q has redelivered=true", w.name, text)
				mu.Lock()
				got[w.name] = append(got[w.name], text)
				mu.Unlock()
				time.Sleep(w.delay)
				s.Must(d.Ack(false), "worker %s: basic.ack of %q", w.name, text)
				mu.Lock()
				acked++
				mu.Unlock()
			}
		}()
	}

	expected := make([]string, 0, messages)
	for i := 1; i <= messages; i++ {
		expected = append(expected, fmt.Sprintf("task %d", i))
	}
	for _, body := range expected {
		s.Publish(ch, "", queue, false, amqp.Publishing{Body: []byte(body)})
	}
	snapshot := func() string { mu.Lock(); defer mu.Unlock(); return fmt.Sprintf("acked %d, deliveries %q", acked, got) }
	s.WaitFor(func() bool { mu.Lock(); defer mu.Unlock(); return acked >= messages }, 15*time.Second,
		func() string { return fmt.Sprintf("%d acks (%s)", messages, snapshot()) })
	time.Sleep(300 * time.Millisecond) // any further delivery would be a duplicate

	mu.Lock()
	var every []string
	for _, w := range workers {
		every = append(every, got[w.name]...)
		index := func(m string) int {
			for i, e := range expected {
				if e == m {
					return i
				}
			}
			return -1
		}
		for i := 1; i < len(got[w.name]); i++ {
			s.Check(index(got[w.name][i-1]) < index(got[w.name][i]), "worker %s got messages out of order: %q", w.name, got[w.name])
		}
	}
	seen := map[string]int{}
	for _, m := range every {
		seen[m]++
		s.Check(seen[m] == 1, "message %q processed more than once (deliveries: %q)", m, got)
	}
	sorted := append([]string(nil), every...)
	sort.Strings(sorted)
	want := append([]string(nil), expected...)
	sort.Strings(want)
	s.Check(fmt.Sprint(sorted) == fmt.Sprint(want), "processed %q, expected each of %q once", every, expected)
	fmt.Printf("distribution: slow=%d, fast=%d\n", len(got["slow"]), len(got["fast"]))
	s.Check(len(got["slow"]) >= 1, "the slow worker got nothing (deliveries: %q)", got)
	s.Check(len(got["slow"]) <= 5, "the slow worker got %d of %d messages: dispatch is not fair "+
		"(round-robin ignoring prefetch 1?); deliveries: %q", len(got["slow"]), messages, got)
	mu.Unlock()

	q, err = ch.QueueInspect(queue)
	s.Must(err, "passive queue.declare %q", queue)
	s.Check(q.Messages == 0, "queue still has %d messages ready", q.Messages)
	s.Check(q.Consumers == len(workers), "queue.declare-ok consumer_count = %d, expected %d", q.Consumers, len(workers))

	for name, wch := range chans {
		s.Must(wch.Cancel("worker-"+name, false), "basic.cancel worker-%s", name)
		s.Must(wch.Close(), "closing channel of worker %s", name)
	}
	wg.Wait()
	n, err := ch.QueueDelete(queue, false, false, false)
	s.Must(err, "queue.delete %q", queue)
	s.Check(n == 0, "queue.delete-ok message_count = %d", n)
	s.Must(conn.Close(), "closing the connection")
	fmt.Println("ok")
}
