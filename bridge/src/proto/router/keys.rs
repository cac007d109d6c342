//! Keys of the objects a [`Router`](super::Router) owns.
//!
//! Generational (`slotmap`): a key of a removed object never reaches the object
//! that reuses its slot. Every key is minted by one router's own maps and only
//! ever stored inside that router (the shard keeps (router, endpoint) pairs, and
//! checks the endpoint's port on use), so no relation can cross conferences.

slotmap::new_key_type! {
    /// A conference on a shard (one [`Router`](super::Router)).
    pub struct RouterKey;
    /// An endpoint (its [`Transport`](crate::proto::transport::Transport) and
    /// what it publishes and receives) inside one router.
    pub struct EndpointKey;
    /// A [`Producer`](super::Producer): one incoming source, inside one router.
    pub struct ProducerKey;
    /// A [`Consumer`](super::Consumer): one receive slot, inside one router.
    pub struct ConsumerKey;
}
