//! DNS_CHECK: a query of `type` for `name` (hickory-proto builds and parses the messages) over
//! UDP; the answer must carry the query's id, rcode NOERROR and at least one record of the
//! queried type.

use std::{hash::BuildHasher as _, str::FromStr as _, time::Duration};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
    serialize::binary::{BinDecodable as _, BinEncodable as _},
};

use super::{socket, CheckError, Deadline, Success, Target, MAX_REPLY};

/// A DNS_CHECK.
#[derive(Clone, Debug)]
pub struct DnsProbe {
    /// The server.
    pub target: Target,
    /// `name`.
    pub name: Name,
    /// `type`.
    pub qtype: RecordType,
    /// `connect_timeout`.
    pub timeout: Duration,
}

impl DnsProbe {
    /// Builds the probe.
    ///
    /// # Errors
    /// The name or type is invalid.
    pub fn build(target: Target, qtype: &str, name: &str, timeout: Duration) -> Result<DnsProbe, CheckError> {
        let rtype = RecordType::from_str(&qtype.to_ascii_uppercase()).map_err(|e| CheckError::Config(format!("DNS type {qtype:?}: {e}")))?;
        let mut n = Name::from_ascii(name).map_err(|e| CheckError::Config(format!("DNS name {name:?}: {e}")))?;
        n.set_fqdn(true);
        Ok(DnsProbe { target, name: n, qtype: rtype, timeout })
    }

    /// The query with `id`.
    ///
    /// # Errors
    /// Encoding fails.
    pub fn query(&self, id: u16) -> Result<Vec<u8>, CheckError> {
        let mut m = Message::new();
        m.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
        m.add_query(Query::query(self.name.clone(), self.qtype));
        m.to_bytes().map_err(|e| CheckError::Config(format!("encoding the query: {e}")))
    }

    /// Judges an answer to query `id` (pure).
    ///
    /// # Errors
    /// Not an answer to the query, an error rcode, or no record of the type.
    pub fn judge(&self, id: u16, answer: &[u8]) -> Result<Success, CheckError> {
        let m = Message::from_bytes(answer).map_err(|e| CheckError::Protocol(format!("undecodable DNS message: {e}")))?;
        if m.id() != id || m.message_type() != MessageType::Response {
            return Err(CheckError::Protocol(format!("not an answer to query {id} (id {}, {:?})", m.id(), m.message_type())));
        }
        if m.response_code() != ResponseCode::NoError {
            return Err(CheckError::Mismatch(format!("rcode {}", m.response_code())));
        }
        let n = m.answers().iter().filter(|r| r.record_type() == self.qtype).count();
        if n == 0 {
            return Err(CheckError::Mismatch(format!("no {} record for {}", self.qtype, self.name)));
        }
        Ok(Success::new(format!("{n} {} record(s)", self.qtype)))
    }

    /// Sends the query and waits for the matching answer (others are ignored).
    ///
    /// # Errors
    /// No answer in time, ICMP error, or a bad answer.
    pub async fn run(&self) -> Result<Success, CheckError> {
        let deadline = Deadline::after(self.timeout);
        let id = (std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now()) & 0xffff) as u16;
        let q = self.query(id)?;
        let s = socket(&self.target, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        let sock = tokio::net::UdpSocket::from_std(s.into()).map_err(|source| CheckError::Io { stage: "setting up the socket", source })?;
        sock.connect(self.target.addr).await.map_err(|source| CheckError::Connect { addr: self.target.addr, source })?;
        deadline.io("sending the query", sock.send(&q)).await?;
        let mut buf = vec![0u8; MAX_REPLY];
        // Bounded: each pass consumes a datagram, and the deadline ends the loop.
        loop {
            let n = deadline.io("waiting for the answer", sock.recv(&mut buf)).await?;
            match self.judge(id, &buf[..n]) {
                Err(CheckError::Protocol(_)) => continue,
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{rdata::A, RData, Record};

    fn probe() -> DnsProbe {
        let t = Target { addr: "198.18.0.1:53".parse().expect("addr"), bind: None, bind_if: None, fwmark: None };
        DnsProbe::build(t, "a", "www.example.test", Duration::from_secs(1)).expect("build")
    }

    /// Answers are matched on id, rcode and record type.
    #[test]
    fn answers() {
        let p = probe();
        let q = Message::from_bytes(&p.query(7).expect("query")).expect("decode");
        assert_eq!(q.queries()[0].query_type(), RecordType::A);
        let mut a = q.clone();
        a.set_message_type(MessageType::Response);
        assert!(p.judge(7, &a.to_bytes().expect("enc")).is_err(), "no records");
        a.add_answer(Record::from_rdata(p.name.clone(), 60, RData::A(A::new(198, 18, 0, 2))));
        assert!(p.judge(7, &a.to_bytes().expect("enc")).is_ok());
        assert!(matches!(p.judge(8, &a.to_bytes().expect("enc")), Err(CheckError::Protocol(_))));
        a.set_response_code(ResponseCode::NXDomain);
        assert!(p.judge(7, &a.to_bytes().expect("enc")).is_err(), "NXDOMAIN");
        assert!(p.judge(7, b"garbage").is_err());
    }
}
