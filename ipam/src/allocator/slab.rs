//! Record storage: a slab in fixed-size chunks.
//!
//! Records are about 120 bytes (they hold the Service). A plain `Vec` would move all of
//! them on every doubling; chunks never move, so inserting costs the same at 100 and at
//! 100 000 records. Ids are reused after removal, lowest-freed-last (a stack), which is
//! deterministic for a given call sequence.

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Debug)]
pub(super) struct Slab<T> {
    chunks: Vec<Vec<Option<T>>>,
    /// Ids ever handed out.
    end: u32,
    vacant: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            end: 0,
            vacant: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    fn at(id: u32) -> (usize, usize) {
        ((id >> CHUNK_BITS) as usize, id as usize & (CHUNK - 1))
    }

    pub fn insert(&mut self, value: T) -> u32 {
        if let Some(id) = self.vacant.pop() {
            let (c, i) = Self::at(id);
            self.chunks[c][i] = Some(value);
            return id;
        }
        let id = self.end;
        self.end += 1;
        let (c, _) = Self::at(id);
        if c == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[c].push(Some(value));
        id
    }

    pub fn remove(&mut self, id: u32) -> Option<T> {
        let (c, i) = Self::at(id);
        let value = self.chunks.get_mut(c)?.get_mut(i)?.take();
        if value.is_some() {
            self.vacant.push(id);
        }
        value
    }

    pub fn get(&self, id: u32) -> Option<&T> {
        let (c, i) = Self::at(id);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        let (c, i) = Self::at(id);
        self.chunks.get_mut(c)?.get_mut(i)?.as_mut()
    }

    /// Every id ever handed out, live or not, ascending.
    pub fn ids(&self) -> std::ops::Range<u32> {
        0..self.end
    }

    /// Live values, by ascending id.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten().flatten()
    }

    /// Live ids and values, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks
            .iter()
            .flatten()
            .zip(0..)
            .filter_map(|(v, id)| v.as_ref().map(|v| (id, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_across_chunks_and_reused_after_removal() {
        let mut s = Slab::default();
        let ids: Vec<u32> = (0..3000).map(|i| s.insert(i)).collect();
        assert_eq!(ids[2999], 2999);
        assert_eq!(s.get(1500), Some(&1500));
        assert_eq!(s.remove(1500), Some(1500));
        assert_eq!(s.remove(1500), None);
        assert_eq!(s.get(1500), None);
        assert_eq!(s.insert(7), 1500);
        assert_eq!(s.values().count(), 3000);
    }
}
