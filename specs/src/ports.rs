//! Published ports in docker's `-p` syntax: `[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`.

use std::fmt;
use std::net::IpAddr;

/// How a spec's port string is read, shown in every port error.
pub const PORT_SYNTAX: &str = "[IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp] or CONTAINER_PORT";

/// One entry of a role's `ports`, as `docker run -p` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The host address to bind; `None` binds every address.
    pub host_ip: Option<IpAddr>,
    /// The host port; `None` lets docker pick a free one (the `CONTAINER_PORT` and `IP::CONTAINER_PORT` forms).
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// Parses one port string; the error names the string and says what is wrong with it.
pub fn parse_port(text: &str) -> Result<PortMapping, String> {
    let invalid = |why: String| format!("{text:?} is not a port mapping: {why} (syntax: {PORT_SYNTAX})");
    let (addresses, protocol) = match text.split_once('/') {
        None => (text, Protocol::Tcp),
        Some((addresses, "tcp")) => (addresses, Protocol::Tcp),
        Some((addresses, "udp")) => (addresses, Protocol::Udp),
        Some((_, other)) => return Err(invalid(format!("unknown protocol {other:?}"))),
    };
    let (host_ip, ports) = split_host_ip(addresses).map_err(invalid)?;
    let (host_port, container_port) = match ports.split_once(':') {
        None if host_ip.is_some() => return Err(invalid("a container port is missing".to_string())),
        None => (None, ports),
        Some((_, container)) if container.contains(':') => return Err(invalid("too many ':'".to_string())),
        // `IP::CONTAINER_PORT`: docker picks the host port on that address.
        Some(("", container)) if host_ip.is_some() => (None, container),
        Some((host, container)) => (Some(port_number("host", host).map_err(invalid)?), container),
    };
    let container_port = port_number("container", container_port).map_err(invalid)?;
    Ok(PortMapping { host_ip, host_port, container_port, protocol })
}

impl PortMapping {
    /// True when both mappings cannot be published on one host at the same time:
    /// the same host port and protocol on overlapping addresses.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        let overlapping = match (self.host_ip, other.host_ip) {
            (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
            _ => true,
        };
        self.host_port.is_some()
            && self.host_port == other.host_port
            && self.protocol == other.protocol
            && overlapping
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The docker `-p` form: `3000:3000/tcp`, `127.0.0.1:8080:80/tcp`, `[::1]::53/udp`, `3000/tcp`.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match self.host_port {
            Some(port) => write!(f, "{port}:")?,
            None if self.host_ip.is_some() => f.write_str(":")?,
            None => {}
        }
        write!(f, "{}/{}", self.container_port, self.protocol)
    }
}

/// Splits a leading host address off: `1.2.3.4:80:80`, `[::1]:80:80`. Only the three-part form has one.
fn split_host_ip(text: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, rest) =
            rest.split_once(']').ok_or_else(|| "unclosed '[' in the host address".to_string())?;
        let ports =
            rest.strip_prefix(':').ok_or_else(|| "a port must follow the host address".to_string())?;
        let ip = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
        return Ok((Some(ip), ports));
    }
    match text.split(':').count() {
        3 => {
            let (ip, ports) = text.split_once(':').unwrap_or_default();
            let ip = ip.parse().map_err(|_| format!("{ip:?} is not an IP address"))?;
            Ok((Some(ip), ports))
        }
        1 | 2 => Ok((None, text)),
        _ => Err("an IPv6 address must be written in brackets, as [::1]".to_string()),
    }
}

fn port_number(which: &str, text: &str) -> Result<u16, String> {
    if text.contains('-') && text.split('-').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("port ranges ({text}) are not supported"));
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("{which} port {text:?} is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms() {
        let cases = [
            ("3000:3000", "3000:3000/tcp"),
            ("3001:3000", "3001:3000/tcp"),
            ("3000", "3000/tcp"),
            ("53/udp", "53/udp"),
            ("127.0.0.1:8080:80", "127.0.0.1:8080:80/tcp"),
            ("127.0.0.1::80", "127.0.0.1::80/tcp"),
            ("[::1]:8080:80/udp", "[::1]:8080:80/udp"),
            ("0.0.0.0:443:8443/tcp", "0.0.0.0:443:8443/tcp"),
        ];
        for (text, shown) in cases {
            let mapping = parse_port(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(mapping.to_string(), shown);
            assert_eq!(parse_port(shown), Ok(mapping), "{shown} reads back");
        }
        let m = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((m.host_port, m.container_port, m.protocol), (Some(8080), 80, Protocol::Udp));
    }

    #[test]
    fn bad_ports_say_why() {
        let cases = [
            ("", "container port \"\" is not a number from 1 to 65535"),
            ("0:3000", "host port \"0\" is not a number from 1 to 65535"),
            ("3000:70000", "container port \"70000\" is not a number from 1 to 65535"),
            ("3000:3000/sctp", "unknown protocol \"sctp\""),
            ("abc:3000", "host port \"abc\" is not a number from 1 to 65535"),
            ("3000-3005:3000-3005", "port ranges (3000-3005) are not supported"),
            ("1.2.3:80:80", "\"1.2.3\" is not an IP address"),
            ("::1:80:80", "an IPv6 address must be written in brackets, as [::1]"),
            ("[::1]80:80", "a port must follow the host address"),
            ("+80", "container port \"+80\" is not a number from 1 to 65535"),
            (" 80", "container port \" 80\" is not a number from 1 to 65535"),
        ];
        for (text, why) in cases {
            let err = parse_port(text).expect_err(text);
            assert_eq!(err, format!("{text:?} is not a port mapping: {why} (syntax: {PORT_SYNTAX})"));
        }
    }

    #[test]
    fn conflicts() {
        let p = |t: &str| parse_port(t).unwrap();
        assert!(p("3000:3000").conflicts_with(&p("3000:4000")));
        assert!(p("3000:3000").conflicts_with(&p("127.0.0.1:3000:80")));
        assert!(p("0.0.0.0:3000:3000").conflicts_with(&p("127.0.0.1:3000:80")));
        assert!(!p("127.0.0.2:3000:3000").conflicts_with(&p("127.0.0.1:3000:80")));
        assert!(!p("3000:3000").conflicts_with(&p("3000:3000/udp")));
        assert!(!p("3000:3000").conflicts_with(&p("3001:3000")));
        assert!(!p("3000").conflicts_with(&p("3000")));
    }
}
