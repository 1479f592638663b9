//! Data-driven snapshot tests of the Caddy config: routes written as fixture lines in, the config out
//! (`UPDATE_EXPECT=1` to refresh); every config read back gives the same routes, exactly.
//!
//! Fixture lines: `grace DURATION_MS`; `route ROLE port=P [hosts=A,B]`.

use std::time::Duration;

use expect_test::{expect, Expect};
use serde_json::json;

use super::*;

const ADMIN: u16 = 2019;

fn check(fixture: &str, expect: Expect) {
    let routes = parse_fixture(fixture);
    let config = build(&routes, ADMIN);
    expect.assert_eq(&format!("{}\n", serde_json::to_string_pretty(&config).unwrap()));
    let read = read(&config, ADMIN).expect("a config ballast wrote is ballast's");
    assert!(read.exact, "a config ballast wrote reads back as exact");
    let mut expected = routes.routes.clone();
    expected
        .sort_by(|a, b| (a.port, a.hosts.is_empty(), &a.role).cmp(&(b.port, b.hosts.is_empty(), &b.role)));
    assert_eq!(read.routes.routes, expected);
    assert_eq!(read.routes.grace, routes.grace);
}

fn parse_fixture(fixture: &str) -> Routes {
    let mut routes = Routes::default();
    for line in fixture.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        match words.next().unwrap() {
            "grace" => routes.grace = Duration::from_millis(words.next().unwrap().parse().unwrap()),
            "route" => {
                let role = words.next().unwrap().to_string();
                let mut route = Route { role, port: 0, hosts: Vec::new() };
                for word in words {
                    let (key, value) = word.split_once('=').unwrap();
                    match key {
                        "port" => route.port = value.parse().unwrap(),
                        "hosts" => route.hosts = value.split(',').map(str::to_string).collect(),
                        other => panic!("unknown key {other}"),
                    }
                }
                routes.routes.push(route);
            }
            other => panic!("unknown fixture line {other}"),
        }
    }
    routes
}

#[test]
fn one_role_on_one_port() {
    check(
        "grace 30000
         route web port=80",
        expect![[r#"
            {
              "admin": {
                "listen": "127.0.0.1:2019"
              },
              "apps": {
                "http": {
                  "grace_period": "30s",
                  "servers": {
                    "ballast-80": {
                      "automatic_https": {
                        "disable": true
                      },
                      "listen": [
                        ":80"
                      ],
                      "routes": [
                        {
                          "@id": "ballast.web",
                          "handle": [
                            {
                              "handler": "reverse_proxy",
                              "load_balancing": {
                                "try_duration": "5s",
                                "try_interval": "25ms"
                              },
                              "upstreams": [
                                {
                                  "dial": "{file./ballast/upstreams/web}"
                                }
                              ]
                            }
                          ],
                          "terminal": true
                        }
                      ]
                    }
                  }
                }
              }
            }
        "#]],
    );
}

#[test]
fn roles_sharing_a_port_by_host_name_then_a_catch_all() {
    check(
        "grace 1500
         route web port=80
         route api port=80 hosts=api.example.com,*.api.example.com",
        expect![[r#"
            {
              "admin": {
                "listen": "127.0.0.1:2019"
              },
              "apps": {
                "http": {
                  "grace_period": "1500ms",
                  "servers": {
                    "ballast-80": {
                      "automatic_https": {
                        "disable": true
                      },
                      "listen": [
                        ":80"
                      ],
                      "routes": [
                        {
                          "@id": "ballast.api",
                          "handle": [
                            {
                              "handler": "reverse_proxy",
                              "load_balancing": {
                                "try_duration": "5s",
                                "try_interval": "25ms"
                              },
                              "upstreams": [
                                {
                                  "dial": "{file./ballast/upstreams/api}"
                                }
                              ]
                            }
                          ],
                          "match": [
                            {
                              "host": [
                                "api.example.com",
                                "*.api.example.com"
                              ]
                            }
                          ],
                          "terminal": true
                        },
                        {
                          "@id": "ballast.web",
                          "handle": [
                            {
                              "handler": "reverse_proxy",
                              "load_balancing": {
                                "try_duration": "5s",
                                "try_interval": "25ms"
                              },
                              "upstreams": [
                                {
                                  "dial": "{file./ballast/upstreams/web}"
                                }
                              ]
                            }
                          ],
                          "terminal": true
                        }
                      ]
                    }
                  }
                }
              }
            }
        "#]],
    );
}

#[test]
fn names_no_role_takes_answer_404() {
    check(
        "grace 0
         route api port=8080 hosts=api.example.com",
        expect![[r#"
            {
              "admin": {
                "listen": "127.0.0.1:2019"
              },
              "apps": {
                "http": {
                  "grace_period": "0s",
                  "servers": {
                    "ballast-8080": {
                      "automatic_https": {
                        "disable": true
                      },
                      "listen": [
                        ":8080"
                      ],
                      "routes": [
                        {
                          "@id": "ballast.api",
                          "handle": [
                            {
                              "handler": "reverse_proxy",
                              "load_balancing": {
                                "try_duration": "5s",
                                "try_interval": "25ms"
                              },
                              "upstreams": [
                                {
                                  "dial": "{file./ballast/upstreams/api}"
                                }
                              ]
                            }
                          ],
                          "match": [
                            {
                              "host": [
                                "api.example.com"
                              ]
                            }
                          ],
                          "terminal": true
                        },
                        {
                          "@id": "ballast.unrouted.8080",
                          "handle": [
                            {
                              "body": "no role is served for this host name on port 8080\n",
                              "handler": "static_response",
                              "status_code": 404
                            }
                          ]
                        }
                      ]
                    }
                  }
                }
              }
            }
        "#]],
    );
}

#[test]
fn no_config_is_no_routes_and_a_changed_one_is_not_exact() {
    assert_eq!(read(&serde_json::Value::Null, ADMIN), None);
    let routes = parse_fixture("grace 30000\nroute web port=80");
    let mut config = build(&routes, ADMIN);
    config["apps"]["http"]["servers"]["ballast-80"]["routes"][0]["handle"][0]["upstreams"][0]["dial"] =
        json!("172.18.0.9:3000");
    let changed = read(&config, ADMIN).unwrap();
    assert_eq!(changed.routes, routes, "the routes are still read");
    assert!(!changed.exact, "an upstream written into the config is not ballast's config");
    config = build(&routes, ADMIN);
    config["apps"]["http"]["servers"]["ballast-80"]["listen"] = json!([":8080"]);
    assert!(!read(&config, ADMIN).unwrap().exact, "a changed listener is not ballast's config");
    let foreign = json!({"apps": {"http": {"servers": {"srv0": {"listen": [":80"]}}}}});
    let read_foreign = read(&foreign, ADMIN).unwrap();
    assert!(!read_foreign.exact && read_foreign.routes.routes.is_empty());
}
