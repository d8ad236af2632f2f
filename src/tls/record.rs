//! The TLS record layer of a protected upload's receive side, after rustls has done the handshake:
//! records are decrypted where they were received (the registered buffers), so the plaintext is
//! written to the file from the same buffer with no copy at all.
//!
//! rustls 0.23 hands decrypted records out of a Vec of its own; its kernel-connection API
//! (`dangerous_into_kernel_connection`, made for kTLS) gives the traffic keys instead, and this
//! module is the software half that kTLS would otherwise be: AEAD open in place (aws-lc-rs, the
//! provider rustls uses), sequence numbers, the TLS 1.3 inner content type, and close_notify both
//! ways. Sans-IO: bytes in, ranges and events out.
//!
//! Scope, on purpose: the receive side of one connection that only receives application data and
//! ends with close_notify (a stream-mode upload). A key update, a renegotiation or any other
//! record type ends the connection with an error, which the upload reports as a lost connection
//! (426); rustls keeps handling every connection that is not such an upload.

use std::ops::Range;

use aws_lc_rs::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion};

/// A record the peer must not send here, or one that fails to decrypt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("TLS record: {0}")]
    Bad(&'static str),
    #[error("TLS record failed to decrypt (corrupt or forged)")]
    Decrypt,
    #[error("TLS alert from the peer (level {0}, description {1})")]
    Alert(u8, u8),
    #[error("TLS {0} after the handshake is not supported on an upload connection")]
    Unsupported(&'static str),
}

const HEADER: usize = 5;
const TAG: usize = 16;
/// The largest ciphertext a record may carry (RFC 8446 5.2: 2^14 + 256).
const MAX_CIPHERTEXT: usize = (1 << 14) + 256;
const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;

/// What a record held.
#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    /// Application data: this range of the record buffer, decrypted in place.
    Data(Range<usize>),
    /// close_notify: the peer's data ended on purpose.
    CloseNotify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tls13,
    /// TLS 1.2 AES-GCM: 4 bytes of implicit salt, an 8-byte explicit nonce in each record.
    Tls12Gcm,
    /// TLS 1.2 ChaCha20-Poly1305: the IV XOR the sequence number, like TLS 1.3.
    Tls12Chacha,
}

/// One direction's keys and sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    kind: Kind,
}

impl Keys {
    fn new(
        version: ProtocolVersion,
        seq: u64,
        secrets: &ConnectionTrafficSecrets,
    ) -> Result<Keys, RecordError> {
        let (alg, key, iv, chacha) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv, false),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv, false),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&CHACHA20_POLY1305, key, iv, true)
            }
            _ => return Err(RecordError::Unsupported("cipher suite")),
        };
        let kind = match (version, chacha) {
            (ProtocolVersion::TLSv1_3, _) => Kind::Tls13,
            (ProtocolVersion::TLSv1_2, false) => Kind::Tls12Gcm,
            (ProtocolVersion::TLSv1_2, true) => Kind::Tls12Chacha,
            _ => return Err(RecordError::Unsupported("protocol version")),
        };
        let unbound =
            UnboundKey::new(alg, key.as_ref()).map_err(|_| RecordError::Bad("key length"))?;
        let iv: [u8; 12] = iv
            .as_ref()
            .try_into()
            .map_err(|_| RecordError::Bad("IV length"))?;
        Ok(Keys {
            key: LessSafeKey::new(unbound),
            iv,
            seq,
            kind,
        })
    }

    /// The per-record nonce of TLS 1.3 and TLS 1.2 ChaCha20: the IV XOR the sequence number.
    fn xor_nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// TLS 1.2's additional data: sequence number, type, version, plaintext length.
    fn aad12(&self, content_type: u8, len: usize) -> [u8; 13] {
        let mut a = [0u8; 13];
        a[..8].copy_from_slice(&self.seq.to_be_bytes());
        a[8] = content_type;
        a[9] = 3;
        a[10] = 3;
        a[11..].copy_from_slice(&(len as u16).to_be_bytes());
        a
    }
}

/// Decrypts received records in place.
pub struct Opener {
    keys: Keys,
}

impl Opener {
    /// The receive direction of a connection whose handshake rustls finished: `rx` from
    /// `ExtractedSecrets`.
    pub fn new(
        version: ProtocolVersion,
        rx: &(u64, ConnectionTrafficSecrets),
    ) -> Result<Opener, RecordError> {
        Ok(Opener {
            keys: Keys::new(version, rx.0, &rx.1)?,
        })
    }

    /// The length of the whole record at the start of `buf` once its header is there; checks the
    /// header.
    pub fn record_len(buf: &[u8]) -> Result<Option<usize>, RecordError> {
        let Some(h) = buf.get(..HEADER) else {
            return Ok(None);
        };
        if !matches!(h[0], APPLICATION_DATA | ALERT | HANDSHAKE) {
            return Err(RecordError::Bad("unexpected record type"));
        }
        if h[1] != 3 {
            return Err(RecordError::Bad("record version"));
        }
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if !(TAG..=MAX_CIPHERTEXT).contains(&len) {
            return Err(RecordError::Bad("record length"));
        }
        Ok(Some(HEADER + len))
    }

    /// Decrypts the complete record `rec` (header included) in place.
    pub fn open(&mut self, rec: &mut [u8]) -> Result<Content, RecordError> {
        let (header, body) = rec.split_at_mut(HEADER);
        let outer_type = header[0];
        let k = &self.keys;
        let (plain_start, plain_len, content_type) = match k.kind {
            Kind::Tls13 => {
                if outer_type != APPLICATION_DATA {
                    return Err(RecordError::Bad("TLS 1.3 record outside application data"));
                }
                let nonce = Nonce::assume_unique_for_key(k.xor_nonce());
                let plain = k
                    .key
                    .open_in_place(nonce, Aad::from(&header[..]), body)
                    .map_err(|_| RecordError::Decrypt)?;
                // Inner plaintext: content, then its type, then zero padding.
                let end = plain
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(RecordError::Bad("record without a content type"))?;
                (HEADER, end, plain[end])
            }
            Kind::Tls12Gcm => {
                if body.len() < 8 + TAG {
                    return Err(RecordError::Bad("record length"));
                }
                let (explicit, sealed) = body.split_at_mut(8);
                let mut n = [0u8; 12];
                n[..4].copy_from_slice(&k.iv[..4]);
                n[4..].copy_from_slice(explicit);
                let aad = k.aad12(outer_type, sealed.len() - TAG);
                let plain = k
                    .key
                    .open_in_place(Nonce::assume_unique_for_key(n), Aad::from(aad), sealed)
                    .map_err(|_| RecordError::Decrypt)?;
                (HEADER + 8, plain.len(), outer_type)
            }
            Kind::Tls12Chacha => {
                let aad = k.aad12(outer_type, body.len() - TAG);
                let nonce = Nonce::assume_unique_for_key(k.xor_nonce());
                let plain = k
                    .key
                    .open_in_place(nonce, Aad::from(aad), body)
                    .map_err(|_| RecordError::Decrypt)?;
                (HEADER, plain.len(), outer_type)
            }
        };
        self.keys.seq += 1;
        let data = plain_start..plain_start + plain_len;
        match content_type {
            APPLICATION_DATA => Ok(Content::Data(data)),
            ALERT => match rec.get(data) {
                Some([_, 0]) => Ok(Content::CloseNotify),
                Some([level, desc]) => Err(RecordError::Alert(*level, *desc)),
                _ => Err(RecordError::Bad("alert length")),
            },
            HANDSHAKE => Err(RecordError::Unsupported("handshake message (key update)")),
            _ => Err(RecordError::Bad("unexpected content type")),
        }
    }
}

/// Encrypts the one record the receive side ever sends: its close_notify.
pub struct Sealer {
    keys: Keys,
}

impl Sealer {
    /// The transmit direction: `tx` from `ExtractedSecrets`.
    pub fn new(
        version: ProtocolVersion,
        tx: &(u64, ConnectionTrafficSecrets),
    ) -> Result<Sealer, RecordError> {
        Ok(Sealer {
            keys: Keys::new(version, tx.0, &tx.1)?,
        })
    }

    /// The close_notify record.
    pub fn close_notify(&mut self) -> Result<Vec<u8>, RecordError> {
        let k = &self.keys;
        let alert = [1u8, 0];
        let mut out = Vec::with_capacity(HEADER + 8 + 3 + TAG);
        match k.kind {
            Kind::Tls13 => {
                let mut body = vec![1u8, 0, ALERT];
                let len = (body.len() + TAG) as u16;
                let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                k.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(k.xor_nonce()),
                        Aad::from(header),
                        &mut body,
                    )
                    .map_err(|_| RecordError::Bad("seal"))?;
                out.extend_from_slice(&header);
                out.extend_from_slice(&body);
            }
            Kind::Tls12Gcm => {
                let explicit = k.seq.to_be_bytes();
                let mut n = [0u8; 12];
                n[..4].copy_from_slice(&k.iv[..4]);
                n[4..].copy_from_slice(&explicit);
                let mut body = alert.to_vec();
                k.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(n),
                        Aad::from(k.aad12(ALERT, alert.len())),
                        &mut body,
                    )
                    .map_err(|_| RecordError::Bad("seal"))?;
                let len = (8 + body.len()) as u16;
                out.extend_from_slice(&[ALERT, 3, 3, (len >> 8) as u8, len as u8]);
                out.extend_from_slice(&explicit);
                out.extend_from_slice(&body);
            }
            Kind::Tls12Chacha => {
                let mut body = alert.to_vec();
                k.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(k.xor_nonce()),
                        Aad::from(k.aad12(ALERT, alert.len())),
                        &mut body,
                    )
                    .map_err(|_| RecordError::Bad("seal"))?;
                let len = body.len() as u16;
                out.extend_from_slice(&[ALERT, 3, 3, (len >> 8) as u8, len as u8]);
                out.extend_from_slice(&body);
            }
        }
        self.keys.seq += 1;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{configs, exchange};
    use crate::tls::TlsConn;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    /// A handshake between a rustls client and a server configuration limited to `suite` and
    /// `version`; the server side is turned into its keys.
    fn pair(
        suite: rustls::SupportedCipherSuite,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (TlsConn, crate::tls::conn::Kernel) {
        let dir = tempfile::tempdir().unwrap();
        let (s, c) = configs(dir.path());
        let mut s = (*s).clone();
        let mut provider = (**s.crypto_provider()).clone();
        provider.cipher_suites = vec![suite];
        let s2 = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(s.cert_resolver.clone());
        s = s2;
        s.enable_secret_extraction = true;
        s.send_tls13_tickets = 0;
        let mut server = TlsConn::server(Arc::new(s)).unwrap();
        let mut client = TlsConn::client(c, ServerName::try_from("localhost").unwrap()).unwrap();
        exchange(&mut client, &mut server);
        assert!(!server.is_handshaking());
        (client, server.into_kernel().unwrap())
    }

    fn suites() -> Vec<(
        rustls::SupportedCipherSuite,
        &'static rustls::SupportedProtocolVersion,
    )> {
        use rustls::crypto::aws_lc_rs::cipher_suite::*;
        vec![
            (TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13),
            (TLS13_AES_256_GCM_SHA384, &rustls::version::TLS13),
            (TLS13_CHACHA20_POLY1305_SHA256, &rustls::version::TLS13),
            (
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                &rustls::version::TLS12,
            ),
            (
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                &rustls::version::TLS12,
            ),
            (
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                &rustls::version::TLS12,
            ),
        ]
    }

    /// Splits `wire` into records and opens each; returns the plaintext and whether it ended.
    fn open_all(o: &mut Opener, mut wire: Vec<u8>) -> Result<(Vec<u8>, bool), RecordError> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let n = Opener::record_len(&wire[pos..])?.expect("a whole record");
            match o.open(&mut wire[pos..pos + n])? {
                Content::Data(r) => out.extend_from_slice(&wire[pos + r.start..pos + r.end]),
                Content::CloseNotify => return Ok((out, true)),
            }
            pos += n;
        }
        Ok((out, false))
    }

    #[test]
    fn every_suite_decrypts_in_place_what_a_rustls_client_sends_and_seals_close_notify() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 253) as u8).collect();
        for (suite, version) in suites() {
            let (mut client, k) = pair(suite, version);
            let mut opener = Opener::new(k.version, &k.secrets.rx).unwrap();
            let mut sealer = Sealer::new(k.version, &k.secrets.tx).unwrap();
            assert!(k.leftover.is_empty() && k.plaintext.is_empty());
            client.encrypt(&data).unwrap();
            client.encrypt(b"more").unwrap();
            client.close_notify().unwrap();
            let wire = client.take_outgoing(Vec::new());
            let (plain, ended) = open_all(&mut opener, wire).unwrap();
            assert!(ended, "{suite:?}");
            assert_eq!(plain.len(), data.len() + 4, "{suite:?}");
            assert_eq!(&plain[..data.len()], &data[..]);
            // Our close_notify is one the client accepts.
            client
                .received_bytes(&sealer.close_notify().unwrap())
                .unwrap();
            assert!(client.peer_closed(), "{suite:?}");
        }
    }

    #[test]
    fn a_flipped_bit_or_a_replayed_record_fails_to_decrypt() {
        for (suite, version) in suites() {
            let (mut client, k) = pair(suite, version);
            let mut opener = Opener::new(k.version, &k.secrets.rx).unwrap();
            client.encrypt(b"first").unwrap();
            let first = client.take_outgoing(Vec::new());
            client.encrypt(b"second").unwrap();
            let mut second = client.take_outgoing(Vec::new());
            let mut replay = first.clone();
            open_all(&mut opener, first).unwrap();
            let replayed = open_all(&mut opener, replay.split_off(0));
            assert_eq!(replayed, Err(RecordError::Decrypt), "{suite:?}");
            let n = second.len();
            second[n - 1] ^= 1;
            assert_eq!(open_all(&mut opener, second), Err(RecordError::Decrypt));
        }
    }

    #[test]
    fn headers_are_checked_before_anything_is_buffered() {
        assert_eq!(Opener::record_len(&[23, 3, 3]), Ok(None));
        assert_eq!(Opener::record_len(&[23, 3, 3, 0, 100]), Ok(Some(105)));
        assert!(Opener::record_len(&[99, 3, 3, 0, 100]).is_err());
        assert!(
            Opener::record_len(&[23, 3, 3, 0xff, 0xff]).is_err(),
            "longer than any record"
        );
        assert!(
            Opener::record_len(&[23, 3, 3, 0, 3]).is_err(),
            "shorter than a tag"
        );
    }
}
