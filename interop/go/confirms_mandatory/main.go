// confirms_mandatory: publisher confirms with mandatory publishes. On a channel in confirm
// mode, messages are numbered from 1; every publish is acked (none nacked), including
// unroutable ones; a mandatory publish that no queue takes comes back as basic.return
// 312 NO_ROUTE *before* the basic.ack for its sequence number; routable messages reach the
// queue. amqp091-go expands multiple acks into one Confirmation per sequence number and
// hands them over in sequence order (holding back early ones: RabbitMQ acks unroutable
// messages before routed ones), so the return-before-ack order is checked on what the client
// delivers; the Python and Node versions check it on the raw frames.
package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

type publish struct {
	seq               uint64
	exchange, key     string
	mandatory, routed bool
}

func main() {
	url := s.Start(30 * time.Second)
	conn := s.Dial(url)
	ch := s.Channel(conn)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	s.Must(err, "queue.declare")
	lonely := s.UniqueName("confirms_mandatory", "unbound") // a direct exchange with no bindings
	s.Must(ch.ExchangeDeclare(lonely, "direct", false, false, false, false, nil), "exchange.declare %q", lonely)
	nowhere := s.UniqueName("confirms_mandatory", "nowhere") // no queue has this name

	// Unbuffered, and read by one select loop: the client's reader goroutine hands over each
	// return and confirmation in the order the frames arrived.
	returns := ch.NotifyReturn(make(chan amqp.Return))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation))
	s.Must(ch.Confirm(false), "confirm.select")

	publishes := []publish{
		{1, "", q.Name, false, true},
		{2, "", nowhere, true, false},
		{3, "", q.Name, false, true},
		{4, "", q.Name, true, true},
		{5, "", nowhere, false, false},
		{6, lonely, "any", true, false},
	}
	type event struct {
		kind string
		seq  uint64
	}
	events := make(chan event)
	go func() {
		for {
			select {
			case r, ok := <-returns:
				if !ok {
					return
				}
				s.Check(r.ReplyCode == 312 && r.ReplyText == "NO_ROUTE", "basic.return %d %q, expected 312 \"NO_ROUTE\"", r.ReplyCode, r.ReplyText)
				seq, err := strconv.Atoi(strings.TrimPrefix(string(r.Body), "msg "))
				s.Must(err, "parsing the returned body %q", r.Body)
				p := publishes[seq-1]
				s.Check(r.Exchange == p.exchange && r.RoutingKey == p.key,
					"basic.return of msg %d has exchange %q routing key %q, expected %q %q", seq, r.Exchange, r.RoutingKey, p.exchange, p.key)
				events <- event{"return", uint64(seq)}
			case c, ok := <-confirms:
				if !ok {
					return
				}
				kind := "ack"
				if !c.Ack {
					kind = "nack"
				}
				events <- event{kind, c.DeliveryTag}
			}
		}
	}()

	for _, p := range publishes {
		s.Publish(ch, p.exchange, p.key, p.mandatory, amqp.Publishing{Body: []byte(fmt.Sprintf("msg %d", p.seq))})
	}

	order := []event{}
	confirmed := map[uint64]string{}
	for len(confirmed) < len(publishes) {
		select {
		case e := <-events:
			order = append(order, e)
			if e.kind != "return" {
				_, dup := confirmed[e.seq]
				s.Check(!dup, "sequence number %d confirmed twice (events: %v)", e.seq, order)
				s.Check(e.seq >= 1 && e.seq <= uint64(len(publishes)), "confirm for unknown sequence number %d", e.seq)
				confirmed[e.seq] = e.kind
			}
		case <-time.After(10 * time.Second):
			s.Fail("timed out waiting for confirms of all %d publishes (events: %v)", len(publishes), order)
		}
	}
	fmt.Printf("events (confirmations resequenced by the client): %v\n", order)
	for seq, kind := range confirmed {
		s.Check(kind == "ack", "msg %d was %sed, expected only acks", seq, kind)
	}
	returned := []uint64{}
	want := []uint64{}
	for _, e := range order {
		if e.kind == "return" {
			returned = append(returned, e.seq)
		}
	}
	for _, p := range publishes {
		if p.mandatory && !p.routed {
			want = append(want, p.seq)
		}
	}
	s.Check(fmt.Sprint(returned) == fmt.Sprint(want), "basic.return for %v, expected for %v", returned, want)
	index := func(kind string, seq uint64) int {
		for i, e := range order {
			if e.kind == kind && e.seq == seq {
				return i
			}
		}
		return -1
	}
	for _, seq := range returned {
		s.Check(index("return", seq) < index("ack", seq), "the basic.ack of msg %d arrived before its basic.return (events: %v)", seq, order)
	}

	bodies := []string{}
	for {
		d, ok, err := ch.Get(q.Name, true)
		s.Must(err, "basic.get")
		if !ok {
			break
		}
		bodies = append(bodies, string(d.Body))
	}
	wantBodies := []string{}
	for _, p := range publishes {
		if p.routed {
			wantBodies = append(wantBodies, fmt.Sprintf("msg %d", p.seq))
		}
	}
	s.Check(fmt.Sprint(bodies) == fmt.Sprint(wantBodies), "queue holds %q, expected %q", bodies, wantBodies)

	s.Must(ch.ExchangeDelete(lonely, false, false), "exchange.delete %q", lonely)
	_, err = ch.QueueDelete(q.Name, false, false, false)
	s.Must(err, "queue.delete")
	s.Must(conn.Close(), "closing the connection")
	fmt.Println("ok")
}
