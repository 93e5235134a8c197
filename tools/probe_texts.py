#!/usr/bin/env python3
"""Sends the same raw AMQP 0-9-1 frames to a broker and prints how it answers each mistake.

Used to record RabbitMQ's reply codes and texts and compare Warren with them:
    python3 tools/probe_texts.py 5673 > rabbit.txt   # RabbitMQ 3.10.8
    python3 tools/probe_texts.py 5699 > warren.txt   # warren server --listen 127.0.0.1:5699
    diff <(sed "s/[0-9]\{10\}/N/g" rabbit.txt) <(sed "s/[0-9]\{10\}/N/g" warren.txt)
Standard library only; guest/guest on vhost "/" at 127.0.0.1."""
import socket, struct, sys, time
HOST, PORT = '127.0.0.1', int(sys.argv[1]) if len(sys.argv) > 1 else 5673
def ss(s): s=s.encode() if isinstance(s,str) else s; return bytes([len(s)])+s
def ls(s): s=s.encode() if isinstance(s,str) else s; return struct.pack('>I',len(s))+s
def tbl(d=None):
    if not d: return struct.pack('>I',0)
    out=b''
    for k,(t,v) in d.items():
        out+=ss(k)+t.encode()
        if t=='S': out+=ls(v)
        elif t=='I': out+=struct.pack('>i',v)
        elif t=='l': out+=struct.pack('>q',v)
        elif t=='t': out+=bytes([1 if v else 0])
    return struct.pack('>I',len(out))+out
def bits(*b): return bytes([sum((1<<i) for i,x in enumerate(b) if x)])
def frame(t,ch,p): return struct.pack('>BHI',t,ch,len(p))+p+b'\xce'
def meth(ch,c,m,args=b''): return frame(1,ch,struct.pack('>HH',c,m)+args)
class C:
    def __init__(s):
        s.s=socket.create_connection((HOST,PORT)); s.buf=b''; s.s.settimeout(3)
        s.s.sendall(b'AMQP\x00\x00\x09\x01'); s.read()
        s.s.sendall(meth(0,10,11,tbl()+ss('PLAIN')+ls('\0guest\0guest')+ss('en_US'))); s.read()
        s.s.sendall(meth(0,10,31,struct.pack('>HIH',2047,131072,0)))
        s.s.sendall(meth(0,10,40,ss('/')+ss('')+bits(0))); s.read()
    def read(s):
        while True:
            if len(s.buf)>=7:
                t,ch,n=struct.unpack('>BHI',s.buf[:7])
                if len(s.buf)>=8+n:
                    p=s.buf[7:7+n]; s.buf=s.buf[8+n:]
                    if t==8: continue
                    return t,ch,p
            try: d=s.s.recv(65536)
            except socket.timeout: return None
            if not d: return None
            s.buf+=d
    def send(s,b): s.s.sendall(b)
    def show(s,label):
        out=[]
        while True:
            f=s.read()
            if f is None: break
            t,ch,p=f
            if t==1:
                c,m=struct.unpack('>HH',p[:4])
                if (c,m) in ((20,40),(10,50)):
                    code=struct.unpack('>H',p[4:6])[0]; n=p[6]; txt=p[7:7+n].decode(); cm=struct.unpack('>HH',p[7+n:11+n])
                    out.append(f'{"CH" if c==20 else "CONN"}.close {code} {txt!r} {cm}')
                    if c==10: s.send(meth(0,10,51))
                    break
                out.append(f'method {c}.{m}')
            else: out.append(f'frame {t}')
        print(label, '=>', '; '.join(out)); sys.stdout.flush()
def xdecl(ch,name,typ='direct',passive=0,durable=0,auto=0,internal=0,args=None): return meth(ch,40,10,struct.pack('>H',0)+ss(name)+ss(typ)+bits(passive,durable,auto,internal,0)+tbl(args))
def qdecl(ch,name,passive=0,durable=0,excl=0,auto=0,args=None): return meth(ch,50,10,struct.pack('>H',0)+ss(name)+bits(passive,durable,excl,auto,0)+tbl(args))
def qbind(ch,q,x,rk=''): return meth(ch,50,20,struct.pack('>H',0)+ss(q)+ss(x)+ss(rk)+bits(0)+tbl())
def qdel(ch,q,unused=0,empty=0): return meth(ch,50,40,struct.pack('>H',0)+ss(q)+bits(unused,empty,0))
def xdel(ch,x,unused=0): return meth(ch,40,20,struct.pack('>H',0)+ss(x)+bits(unused,0))
def pub(ch,x,rk,body=b'hi',mand=0,imm=0,size=None,props=b'\x00\x00'):
    h=struct.pack('>HHQ',60,0,len(body) if size is None else size)+props
    return meth(ch,60,40,struct.pack('>H',0)+ss(x)+ss(rk)+bits(mand,imm))+frame(2,ch,h)+(frame(3,ch,body) if body else b'')
def consume(ch,q,tag='',noack=0,excl=0): return meth(ch,60,20,struct.pack('>H',0)+ss(q)+ss(tag)+bits(0,noack,excl,0)+tbl())
op=meth(1,20,10,ss(''))
def fresh():
    c=C(); c.send(op); c.read(); return c
u=str(int(time.time()))
c=fresh(); c.send(xdecl(1,'x-'+u,'foo')); c.show('unknown type')
c=fresh(); c.send(xdecl(1,'x-'+u)); c.send(xdecl(1,'x-'+u,durable=1)); c.show('x inequivalent durable')
c=fresh(); c.send(xdecl(1,'x-'+u,'fanout')); c.show('x inequivalent type')
c=fresh(); c.send(xdecl(1,'x-'+u,args={'alternate-exchange':('S','ae')})); c.show('x inequivalent args')
c=fresh(); c.send(xdecl(1,'amq.foo')); c.show('x reserved')
c=fresh(); c.send(xdecl(1,'amq.direct',durable=1)); c.show('x redeclare amq.direct')
c=fresh(); c.send(xdecl(1,'',durable=1)); c.show('x declare default')
c=fresh(); c.send(xdecl(1,'nope-'+u,passive=1)); c.show('x passive missing')
c=fresh(); c.send(xdel(1,'amq.direct')); c.show('x delete amq.direct')
c=fresh(); c.send(xdel(1,'')); c.show('x delete default')
c=fresh(); c.send(xdel(1,'nope-'+u)); c.show('x delete missing')
c=fresh(); c.send(qdecl(1,'q-'+u,auto=0)); c.send(qbind(1,'q-'+u,'x-'+u,'k')); c.send(xdel(1,'x-'+u,unused=1)); c.show('x delete if_unused')
c=fresh(); c.send(qbind(1,'q-'+u,'')); c.show('bind default')
c=fresh(); c.send(qbind(1,'nope-'+u,'nope-x-'+u)); c.show('bind missing both')
c=fresh(); c.send(qbind(1,'nope-'+u,'amq.direct')); c.show('bind missing queue')
c=fresh(); c.send(qdecl(1,'q-'+u,durable=1)); c.show('q inequivalent durable')
c=fresh(); c.send(qdecl(1,'q-'+u,args={'x-max-length':('I',10)})); c.show('q inequivalent args')
c=fresh(); c.send(qdecl(1,'amq.foo')); c.show('q reserved')
c=fresh(); c.send(qdecl(1,'nope-'+u,passive=1)); c.show('q passive missing')
c=fresh(); c.send(pub(1,'','q-'+u)); c.send(qdel(1,'q-'+u,empty=1)); c.show('q delete if_empty')
c=fresh(); c.send(consume(1,'q-'+u)); c.read(); d=C(); d.send(op); d.read(); d.send(qdel(1,'q-'+u,unused=1)); d.show('q delete if_unused')
c.send(consume(1,'q-'+u,tag='t1')); c.read(); c.send(consume(1,'q-'+u,tag='t1')); c.show('tag reuse')
c=fresh(); c.send(consume(1,'q-'+u,excl=1)); c.show('exclusive consumer while others')
c=fresh(); c.send(qdecl(1,'e-'+u,excl=1)); c.read(); d=fresh(); d.send(qdecl(1,'e-'+u)); d.show('exclusive queue other conn')
d=fresh(); d.send(consume(1,'e-'+u)); d.show('exclusive queue consume other conn')
d=fresh(); d.send(qdel(1,'e-'+u)); d.show('exclusive queue delete other conn')
c=fresh(); c.send(consume(1,'')); c.show('consume no previous')
c=fresh(); c.send(meth(1,60,10,struct.pack('>IHB',10,0,0))); c.show('qos prefetch_size')
c=fresh(); c.send(meth(1,60,80,struct.pack('>QB',5,0))); c.show('ack unknown')
c=fresh(); c.send(meth(1,60,110,bits(0))); c.show('recover false')
c=fresh(); c.send(meth(1,90,20)); c.show('tx.commit non-tx')
c=fresh(); c.send(meth(1,90,30)); c.show('tx.rollback non-tx')
c=fresh(); c.send(meth(1,85,10,bits(0))); c.read(); c.send(meth(1,90,10)); c.show('confirm then tx')
c=fresh(); c.send(meth(1,90,10)); c.read(); c.send(meth(1,85,10,bits(0))); c.show('tx then confirm')
c=fresh(); c.send(pub(1,'','q',imm=1)); c.show('immediate')
c=fresh(); c.send(pub(1,'nope-'+u,'q')); c.show('publish missing exchange')
c=fresh(); c.send(xdecl(1,'i-'+u,internal=1)); c.read(); c.send(pub(1,'i-'+u,'q')); c.show('publish internal')
c=fresh(); c.send(pub(1,'','q',props=struct.pack('>H',0x0200)+ss('amq.rabbitmq.reply-to'))); c.show('reply-to without consumer')
c=fresh(); c.send(consume(1,'amq.rabbitmq.reply-to',noack=0)); c.show('reply-to consume with ack')
c=fresh(); c.send(pub(1,'','q',body=b'abcdef',size=3)); c.show('body too large')
c=fresh(); c.send(meth(1,60,40,struct.pack('>H',0)+ss('')+ss('q')+bits(0,0))+frame(2,1,struct.pack('>HHQ',50,0,1)+b'\x00\x00')); c.show('header wrong class')
c=fresh(); c.send(meth(1,60,40,struct.pack('>H',0)+ss('')+ss('q')+bits(0,0))+meth(1,60,10,struct.pack('>IHB',0,1,0))); c.show('method while expecting header')
c=fresh(); c.send(meth(1,60,40,struct.pack('>H',0)+ss('')+ss('q')+bits(0,0))+frame(2,1,struct.pack('>HHQ',60,0,5)+b'\x00\x00')+meth(1,60,10,struct.pack('>IHB',0,1,0))); c.show('method while expecting body')
c=fresh(); c.send(frame(3,1,b'abc')); c.show('body without method')
c=fresh(); c.send(pub(1,'','q',props=struct.pack('>H',0x2000)+tbl({'CC':('S','x')}))); c.show('CC not array')
c=fresh(); c.send(qdel(1,'q-'+u)); c.show('q delete')
c=fresh(); c.send(qdel(1,'q-'+u)); c.show('q delete missing')
c=fresh(); c.send(qdel(1,'')); c.show('q delete no previous')
a=fresh(); a.send(qdecl(1,'ex-'+u)); a.read(); a.send(consume(1,'ex-'+u,tag='first')); a.read()
b=fresh(); b.send(consume(1,'ex-'+u,excl=1)); b.show('exclusive consume while others')
a2=fresh(); a2.send(qdecl(1,'ex2-'+u)); a2.read(); a2.send(consume(1,'ex2-'+u,tag='only',excl=1)); a2.read()
b=fresh(); b.send(consume(1,'ex2-'+u)); b.show('consume while exclusive')
c=fresh(); c.send(consume(1,'amq.rabbitmq.reply-to',noack=1)); c.read(); c.send(consume(1,'amq.rabbitmq.reply-to',noack=1)); c.show('second reply consumer')
c=fresh(); c.send(meth(1,85,10,bits(0))); c.read(); c.send(pub(1,'','nowhere-'+u,mand=1)); c.show('mandatory confirm order')
c=fresh(); c.send(qdecl(1,'h-'+u)); c.read(); c.send(meth(1,50,20,struct.pack('>H',0)+ss('h-'+u)+ss('amq.headers')+ss('')+bits(0)+tbl({'x-match':('S','bogus')}))); c.show('bad x-match')
c=fresh(); c.send(meth(1,60,20,struct.pack('>H',0)+ss('amq.rabbitmq.reply-to')+ss('')+bits(0,1,0,0)+tbl())); c.read(); c.send(meth(1,60,70,struct.pack('>H',0)+ss('amq.rabbitmq.reply-to')+bits(1))); c.show('get on reply-to')
c=fresh(); c.send(xdecl(1,'ae-'+u,args={'alternate-exchange':('I',5)})); c.show('ae wrong type')
c=fresh(); c.send(qdecl(1,'amq.rabbitmq.reply-to',passive=1)); c.show('passive reply-to')
c=fresh(); c.send(qdecl(1,'amq.rabbitmq.reply-to.abc',passive=1)); c.show('passive reply-to.x')
c=fresh(); c.send(pub(1,'','amq.rabbitmq.reply-to.abc',mand=1)); c.show('publish to stale reply-to')
