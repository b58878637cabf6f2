//! Why an advert was dropped: one stable name per reason, for counters, logs and `ka status`.

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// Why a received advert was refused. The XDP program and userspace count drops per
        /// reason; the names are stable (they appear in `ka status` and its JSON).
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in index order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// Stable, snake_case name.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// Index of the reason (for a per-reason counter array).
            pub const fn index(self) -> u32 {
                self as u32
            }
        }
    };
}

drop_reasons! {
    /// Shorter than the fixed header, or than the addresses/auth trailer it announces.
    TooShort = "too_short",
    /// Version is not 2 or 3, or not the version the instance runs (RFC 5798 §7.1).
    BadVersion = "bad_version",
    /// Type is not ADVERTISEMENT (RFC 3768 §5.3.2, RFC 5798 §5.2.2).
    BadType = "bad_type",
    /// IPv4 TTL or IPv6 Hop Limit is not 255 (RFC 5798 §7.1).
    BadTtl = "bad_ttl",
    /// Message length does not match Count IPvX Addrs (RFC 5798 §7.1).
    BadLength = "bad_length",
    /// Checksum does not verify (RFC 5798 §7.1), with the configured checksum flavour.
    BadChecksum = "bad_checksum",
    /// VRRPv2 Auth Type is not 0, 1 or 2.
    BadAuthType = "bad_auth_type",
    /// VRRPv2 Auth Type differs from the configured one (RFC 2338 §7.1).
    AuthTypeMismatch = "auth_type_mismatch",
    /// VRRPv2 simple password does not match (RFC 2338 §7.1).
    AuthFailure = "auth_failure",
    /// IPsec AH header that is not keepalived's: Next Header is not VRRP, or Payload Len is not
    /// 4 (a 96-bit ICV); or an IPv4 header that cannot carry it.
    AhBadHeader = "ah_bad_header",
    /// IPsec AH ICV (HMAC-MD5-96 keyed with `auth_pass`) does not verify: another password, or
    /// the packet changed on the way (keepalived: "invalid IPSEC HMAC-MD5 value").
    AhBadIcv = "ah_bad_icv",
    /// IPsec AH SPI is not the sender's IPv4 address (keepalived: "invalid IPSEC SPI value").
    AhBadSpi = "ah_bad_spi",
    /// IPsec AH sequence number not above the instance's counter (keepalived: "sequence number
    /// already processed"): a replay, or a sender that restarted from a lower number.
    AhReplay = "ah_replay",
    /// VRRPv2 Adver Int differs from the local one (RFC 3768 §7.1).
    AdverIntMismatch = "adver_int_mismatch",
    /// VRID is not configured on the receiving interface (RFC 5798 §7.1).
    VridMismatch = "vrid_mismatch",
    /// Count IPvX Addrs differs from the number of configured virtual addresses (keepalived).
    AddrCountMismatch = "addr_count_mismatch",
    /// A configured virtual address is missing from the advert (RFC 5798 §7.1 MAY).
    AddrListMismatch = "addr_list_mismatch",
    /// Unicast source is not a configured peer (keepalived `check_unicast_src`).
    NotUnicastPeer = "not_unicast_peer",
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
